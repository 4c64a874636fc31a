/**
 * A set of chunk ids as one bit per id up to the largest: chunk ids are dense and increasing per
 * stream, so a million live ids take 125 KB here against ~20 MB as a JS Set (one per layer and
 * index: 30 layers at smolvlm2-256m geometry). It takes largest id / 8 bytes (a year at one frame a
 * second: 4 MB). Iterates in ascending order.
 */
export class IdBitSet {
  private words = new Uint32Array(64);
  private count = 0;

  get size(): number {
    return this.count;
  }

  has(id: number): boolean {
    const word = id >>> 5;
    return word < this.words.length && (this.words[word]! & (1 << (id & 31))) !== 0;
  }

  /** Adds `id`; false when it was already there. */
  add(id: number): boolean {
    const word = id >>> 5;
    if (word >= this.words.length) this.grow(word + 1);
    const bit = 1 << (id & 31);
    if ((this.words[word]! & bit) !== 0) return false;
    this.words[word]! |= bit;
    this.count++;
    return true;
  }

  /** Removes `id`; false when it was not there. */
  delete(id: number): boolean {
    if (!this.has(id)) return false;
    this.words[id >>> 5]! &= ~(1 << (id & 31));
    this.count--;
    return true;
  }

  /** Every id, ascending. */
  toArray(): Uint32Array {
    const out = new Uint32Array(this.count);
    let n = 0;
    for (let word = 0; word < this.words.length; word++) {
      let bits = this.words[word]!;
      while (bits !== 0) {
        const low = bits & -bits;
        out[n++] = word * 32 + (31 - Math.clz32(low));
        bits ^= low;
      }
    }
    return out;
  }

  /** Ids in [from, to), ascending. O(words in the range + result); counted first, so one typed array. */
  between(from: number, to: number): Uint32Array {
    const first = Math.max(0, Math.floor(from / 32));
    const last = Math.min(this.words.length, Math.ceil(to / 32));
    const visit = (emit: (id: number) => void): void => {
      for (let word = first; word < last; word++) {
        let bits = this.words[word]!;
        while (bits !== 0) {
          const low = bits & -bits;
          const id = word * 32 + (31 - Math.clz32(low));
          if (id >= from && id < to) emit(id);
          bits ^= low;
        }
      }
    };
    let count = 0;
    visit(() => count++);
    const out = new Uint32Array(count);
    let n = 0;
    visit((id) => (out[n++] = id));
    return out;
  }

  /** Lowest id, or undefined when empty. */
  min(): number | undefined {
    for (let word = 0; word < this.words.length; word++) {
      const bits = this.words[word]!;
      if (bits !== 0) return word * 32 + (31 - Math.clz32(bits & -bits));
    }
    return undefined;
  }

  /** Highest id, or undefined when empty. */
  max(): number | undefined {
    for (let word = this.words.length - 1; word >= 0; word--) {
      const bits = this.words[word]!;
      if (bits !== 0) return word * 32 + (31 - Math.clz32(bits));
    }
    return undefined;
  }

  private grow(minWords: number): void {
    const next = new Uint32Array(Math.max(minWords, this.words.length * 2));
    next.set(this.words);
    this.words = next;
  }
}

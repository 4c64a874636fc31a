// Turns a set of records to read into few large reads: grouped by segment, in offset order,
// neighbours merged when the gap between them is small (reading a few unneeded bytes is
// cheaper than another system call and seek), each read capped so buffers stay bounded.

export interface Extent {
  segment: number;
  offset: number;
  length: number;
}

export interface ReadRun<T extends Extent> {
  segment: number;
  offset: number;
  length: number;
  /** The records inside this run, by offset. */
  items: T[];
}

export interface ReadPlanOptions {
  /** Merge two records when at most this many bytes lie between them. */
  maxGapBytes: number;
  /** Do not grow a run past this many bytes (a single larger record still gets its own run). */
  maxRunBytes: number;
}

export function planReads<T extends Extent>(items: readonly T[], options: ReadPlanOptions): ReadRun<T>[] {
  const sorted = [...items].sort((a, b) => a.segment - b.segment || a.offset - b.offset);
  const runs: ReadRun<T>[] = [];
  let run: ReadRun<T> | undefined;
  for (const it of sorted) {
    const end = it.offset + it.length;
    if (
      run !== undefined &&
      run.segment === it.segment &&
      it.offset - (run.offset + run.length) <= options.maxGapBytes &&
      end - run.offset <= options.maxRunBytes
    ) {
      run.length = Math.max(run.length, end - run.offset);
      run.items.push(it);
    } else {
      run = { segment: it.segment, offset: it.offset, length: it.length, items: [it] };
      runs.push(run);
    }
  }
  return runs;
}

// Moves the oldest recent chunks of a stream index into a sealed block, in the background: the
// block is built from a copy (k-means per layer, yielding between layers), written and fsynced,
// and only then swapped in (sealed tier gains it, the recent tier drops those chunks) in one
// synchronous step, so a search sees every chunk exactly once at any moment and a crash at any
// point leaves the last saved index whole (an unlisted block file is an orphan the next load deletes).
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { VigilError } from '../common/errors.js';
import { writeDurable, syncFolder } from './persist.js';
import { encodeBlock, type BlockInput } from './sealedBlock.js';
import { blockFileName, SealedTier, type SealedListing } from './sealedTier.js';
import type { SimilaritySpace } from './space.js';
import { checkConfigInt } from './validate.js';

export interface SealingOptions {
  /** Folder of the block files: beside the saved index, never inside it (a save replaces that folder). */
  dir: string;
  /** Chunks per block (default 2048). A seal starts once twice this many chunks are recent. */
  blockChunks?: number;
  /** Mean chunks per k-means list inside a block (default 64). */
  listChunks?: number;
  /** Lists read per layer and question before a search may stop (default 96). */
  probeLists?: number;
  /** Load without deleting block files the save does not list (a reader beside a running writer). */
  readOnly?: boolean;
}

export interface ResolvedSealing {
  dir: string;
  blockChunks: number;
  listChunks: number;
  probeLists: number;
}

export const DEFAULT_BLOCK_CHUNKS = 2048;
export const DEFAULT_LIST_CHUNKS = 64;
export const DEFAULT_PROBE_LISTS = 96;

export function resolveSealing(options: SealingOptions): ResolvedSealing {
  if (typeof options !== 'object' || options === null || typeof options.dir !== 'string' || options.dir.length === 0) {
    throw new VigilError('BAD_CONFIG', 'sealing needs { dir } naming the folder of the block files');
  }
  const resolved = {
    dir: options.dir,
    blockChunks: options.blockChunks ?? DEFAULT_BLOCK_CHUNKS,
    listChunks: options.listChunks ?? DEFAULT_LIST_CHUNKS,
    probeLists: options.probeLists ?? DEFAULT_PROBE_LISTS,
  };
  checkConfigInt('sealing.blockChunks', resolved.blockChunks, 2);
  checkConfigInt('sealing.listChunks', resolved.listChunks, 1);
  checkConfigInt('sealing.probeLists', resolved.probeLists, 1);
  return resolved;
}

/** What the sealer needs of the index that owns it. */
export interface SealerHost {
  recentCount(): number;
  /** The save in progress, if any: a swap waits for it (a save must see one consistent state). */
  saving(): Promise<void> | undefined;
  /** Copies of the `count` oldest recent chunks (ids ascending, times, one packed array per layer). */
  snapshot(count: number): BlockInput;
  present(id: number): boolean;
  dropRecent(ids: readonly number[]): void;
}

export class ChunkSealer {
  private running: Promise<void> | undefined;
  private disposed = false;
  private retryAfter = 0;
  failures = 0;
  /** Blocks swapped in since this index was created or loaded. */
  swaps = 0;

  constructor(
    readonly tier: SealedTier,
    private readonly options: ResolvedSealing,
    private readonly host: SealerHost,
  ) {}

  static emptyTier(options: SealingOptions, numLayers: number, dim: number, space: SimilaritySpace): SealedTier {
    const resolved = resolveSealing(options);
    return SealedTier.create({ dir: resolved.dir, numLayers, dim, space, probeLists: resolved.probeLists });
  }

  static loadTier(options: SealingOptions, numLayers: number, dim: number, space: SimilaritySpace, listing: readonly SealedListing[]): { tier: SealedTier; unusable: string[] } {
    const resolved = resolveSealing(options);
    return SealedTier.load({ dir: resolved.dir, numLayers, dim, space, probeLists: resolved.probeLists }, listing, { deleteOrphans: options.readOnly !== true });
  }

  /** Starts a seal when enough chunks are recent and none is running. */
  maybeSeal(): void {
    if (this.running || this.disposed || !this.due()) return;
    this.running = this.sealOldest()
      .catch((error: unknown) => {
        // Not fatal: the chunks stay recent (searched exactly) and a later add tries again.
        this.failures++;
        this.retryAfter = this.host.recentCount() + Math.ceil(this.options.blockChunks / 4);
        process.emitWarning(`stream index: sealing a block into ${this.options.dir} failed (retried later): ${(error as Error).message}`);
      })
      .finally(() => {
        this.running = undefined;
      });
  }

  /** Resolves once no seal runs and none is due. */
  async idle(): Promise<void> {
    for (;;) {
      if (this.running) await this.running;
      else if (!this.disposed && this.due()) this.maybeSeal();
      else return;
    }
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    await this.running;
    this.tier.dispose();
  }

  private due(): boolean {
    const recent = this.host.recentCount();
    return recent >= 2 * this.options.blockChunks && recent >= this.retryAfter;
  }

  private async sealOldest(): Promise<void> {
    const input = this.host.snapshot(this.options.blockChunks);
    const yieldTurn = (): Promise<void> => new Promise<void>((resolve) => setImmediate(resolve));
    const bytes = await encodeBlock(input, { dim: this.tier.options.dim, space: this.tier.options.space, listChunks: this.options.listChunks, seed: input.ids[0]! }, yieldTurn);
    const name = blockFileName(input.ids[0]!, randomBytes(4).toString('hex'));
    await writeDurable(join(this.options.dir, name), bytes);
    await syncFolder(this.options.dir);
    for (let saving = this.host.saving(); saving; saving = this.host.saving()) await saving;
    // The swap: synchronous, so no search or save sees a chunk in both tiers or in neither.
    const gone = new Set<number>();
    const moved: number[] = [];
    for (const id of input.ids) {
      if (this.host.present(id)) moved.push(id);
      else gone.add(id);
    }
    this.tier.addBlock(name, gone);
    this.host.dropRecent(moved);
    this.swaps++;
  }
}

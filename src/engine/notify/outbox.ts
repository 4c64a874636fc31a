/**
 * The notification outbox: a persisted list of alerts still owed to webhooks, so that an alert is
 * delivered at least once across restarts (docs/notifications.md).
 *
 * On disk it is one append-only NDJSON journal, `outbox.ndjson`, in the folder the caller gives:
 *   {"op":"meta","v":1,"nextSeq":N,"dropped":D}        first line after a compaction
 *   {"op":"add","seq":S,"alert":{...},"targets":[ids]} an alert owed to these webhooks
 *   {"op":"done","seq":S,"webhook":id}                  one target settled (delivered, or failed for good)
 *   {"op":"drop","seq":S}                               dropped because the outbox was full (oldest first)
 * Every record is written and fsynced (fdatasync) before the call that made it resolves; records
 * made at the same time share one write and one fsync. Replay is idempotent, a torn last line (a
 * crash mid-write) is skipped, and the journal is rewritten (tmp file, fsync, rename, fsync of the
 * folder) with only the live entries when settled records outnumber them, and on every open, so
 * its size is bounded by the live entries: at most `maxEntries` of at most `maxEntryBytes` each.
 * One process at a time: opening takes the folder's LOCK file (a dead owner's lock is taken over),
 * so two notifiers never append to one journal or send its alerts twice over.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { VigilError, isVigilError } from '../../../common/errors.js';
import { acquireStoreLock } from '../../../memory/store/storeLock.js';

export const OUTBOX_FILE = 'outbox.ndjson';

export interface OutboxEntry<T> {
  seq: number;
  item: T;
  /** Webhook ids still owed this item. */
  targets: Set<string>;
}

export interface OutboxOptions {
  /** At most this many entries (alerts) are kept; adding one more drops the oldest. Default 10 000. */
  maxEntries?: number;
  /** A serialized item larger than this is refused (BAD_INPUT). Default 256 KiB. */
  maxEntryBytes?: number;
}

type JournalRecord<T> =
  | { op: 'meta'; v: 1; nextSeq: number; dropped: number }
  | { op: 'add'; seq: number; alert: T; targets: string[] }
  | { op: 'done'; seq: number; webhook: string }
  | { op: 'drop'; seq: number };

interface Waiter {
  resolve(): void;
  reject(error: unknown): void;
}

/** Compact when settled records exceed max(this, live entries). */
const COMPACT_MIN_RECORDS = 256;

export class Outbox<T> {
  readonly maxEntries: number;
  readonly maxEntryBytes: number;
  /** Live entries in seq order (Map keeps insertion order, and seqs only grow). */
  private readonly live = new Map<number, OutboxEntry<T>>();
  private nextSeq = 1;
  private droppedCount = 0;
  /** Records in the file that a compaction would remove (done, drop, settled adds). */
  private deadRecords = 0;
  private corruptLines = 0;
  private queue: string[] = [];
  private waiters: Waiter[] = [];
  private writing: Promise<void> | null = null;
  private compactRequested = false;
  private closed = false;

  private constructor(
    readonly dir: string,
    private handle: fsp.FileHandle,
    private readonly unlock: () => void,
    options: OutboxOptions,
  ) {
    this.maxEntries = options.maxEntries ?? 10_000;
    this.maxEntryBytes = options.maxEntryBytes ?? 256 * 1024;
    if (!Number.isInteger(this.maxEntries) || this.maxEntries < 1) throw new VigilError('BAD_CONFIG', `outbox maxEntries must be a positive integer (got ${this.maxEntries})`);
  }

  /** Opens (creating) the outbox in `dir`, replays its journal and compacts it. */
  static async open<T>(dir: string, options: OutboxOptions = {}): Promise<Outbox<T>> {
    await fsp.mkdir(dir, { recursive: true });
    let unlock: () => void;
    try {
      unlock = acquireStoreLock(dir);
    } catch (error) {
      if (isVigilError(error) && error.code === 'STORE_LOCKED') {
        throw new VigilError('STORE_LOCKED', `the notification outbox in ${dir} is already open (${error.message.replace(/^.* in process/, 'process')})`);
      }
      throw ioError('read', error);
    }
    let handle: fsp.FileHandle | null = null;
    let outbox: Outbox<T> | null = null;
    try {
      const file = path.join(dir, OUTBOX_FILE);
      let text = '';
      try {
        text = await fsp.readFile(file, 'utf8');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError('read', error);
      }
      handle = await fsp.open(file, 'a');
      outbox = new Outbox<T>(dir, handle, unlock, options);
      outbox.replay(text);
      // Entries beyond a (lowered) limit: the oldest go, counted.
      while (outbox.live.size > outbox.maxEntries) outbox.dropOldest();
      outbox.compactRequested = true;
      await outbox.flush();
      return outbox;
    } catch (error) {
      // A compaction may have swapped the handle: close whichever is current.
      await (outbox ? outbox.handle : handle)?.close().catch(() => undefined);
      unlock();
      throw error;
    }
  }

  /** Live entries, oldest first (a copy of the list; the entries themselves are shared). */
  entries(): OutboxEntry<T>[] {
    return [...this.live.values()];
  }

  get(seq: number): OutboxEntry<T> | undefined {
    return this.live.get(seq);
  }

  get depth(): number {
    return this.live.size;
  }

  /** Entries dropped because the outbox was full, over its whole life (persisted). */
  get dropped(): number {
    return this.droppedCount;
  }

  /** Journal lines skipped at open because they did not parse (a torn last write). */
  get skippedLines(): number {
    return this.corruptLines;
  }

  /**
   * Adds an item owed to `targets`; resolves once it is on disk (fsynced). When the outbox is full,
   * the oldest entries are dropped (and returned, so the caller stops delivering them).
   */
  async add(item: T, targets: readonly string[]): Promise<{ entry: OutboxEntry<T>; dropped: OutboxEntry<T>[] }> {
    this.checkOpen();
    const seq = this.nextSeq;
    const line = JSON.stringify({ op: 'add', seq, alert: item, targets: [...targets] } satisfies JournalRecord<T>);
    const bytes = Buffer.byteLength(line);
    if (bytes > this.maxEntryBytes) {
      throw new VigilError('BAD_INPUT', `an alert of ${bytes} bytes is larger than the outbox's limit of ${this.maxEntryBytes} bytes per alert`);
    }
    this.nextSeq++;
    const entry: OutboxEntry<T> = { seq, item, targets: new Set(targets) };
    this.live.set(seq, entry);
    this.queue.push(line);
    const dropped: OutboxEntry<T>[] = [];
    while (this.live.size > this.maxEntries) dropped.push(this.dropOldest());
    try {
      await this.flush();
    } catch (error) {
      // Not on disk: the caller is told, and the entry is not owed (the next write rewrites the journal).
      this.live.delete(seq);
      throw error;
    }
    return { entry, dropped };
  }

  /** One target of an entry is settled (delivered, or failed for good); the entry goes when none is left. */
  async settle(seq: number, webhook: string): Promise<void> {
    this.checkOpen();
    const entry = this.live.get(seq);
    if (!entry || !entry.targets.delete(webhook)) return;
    this.queue.push(JSON.stringify({ op: 'done', seq, webhook } satisfies JournalRecord<T>));
    this.deadRecords++;
    if (entry.targets.size === 0) {
      this.live.delete(seq);
      this.deadRecords++;
    }
    await this.flush();
  }

  /** Waits for pending writes, then closes the file. Later calls throw STORE_CLOSED. */
  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.flush();
    } finally {
      this.closed = true;
      try {
        await this.handle.close();
      } finally {
        this.unlock();
      }
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new VigilError('STORE_CLOSED', 'the notification outbox is closed');
  }

  private dropOldest(): OutboxEntry<T> {
    const oldest = this.live.values().next().value as OutboxEntry<T>;
    this.live.delete(oldest.seq);
    this.droppedCount++;
    this.queue.push(JSON.stringify({ op: 'drop', seq: oldest.seq } satisfies JournalRecord<T>));
    this.deadRecords += 2;
    return oldest;
  }

  private replay(text: string): void {
    const lines = text.split('\n');
    for (const line of lines) {
      if (line.trim() === '') continue;
      let record: JournalRecord<T>;
      try {
        record = JSON.parse(line) as JournalRecord<T>;
      } catch {
        this.corruptLines++;
        continue;
      }
      switch (record.op) {
        case 'meta':
          this.nextSeq = Math.max(this.nextSeq, record.nextSeq);
          this.droppedCount = record.dropped;
          break;
        case 'add':
          if (!this.live.has(record.seq) && Array.isArray(record.targets) && record.targets.length > 0) {
            this.live.set(record.seq, { seq: record.seq, item: record.alert, targets: new Set(record.targets) });
          }
          this.nextSeq = Math.max(this.nextSeq, record.seq + 1);
          break;
        case 'done': {
          const entry = this.live.get(record.seq);
          entry?.targets.delete(record.webhook);
          if (entry && entry.targets.size === 0) this.live.delete(record.seq);
          break;
        }
        case 'drop':
          if (this.live.delete(record.seq)) this.droppedCount++;
          break;
        default:
          this.corruptLines++;
      }
    }
    // Seqs must stay in insertion order for "oldest first"; a journal written by this class already is.
  }

  /** Resolves when everything queued so far is on disk. */
  private flush(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      if (!this.writing) this.writing = this.writeLoop().finally(() => (this.writing = null));
    });
  }

  private async writeLoop(): Promise<void> {
    while (this.waiters.length > 0) {
      const lines = this.queue;
      const waiters = this.waiters;
      this.queue = [];
      this.waiters = [];
      try {
        if (this.compactRequested || this.deadRecords > Math.max(COMPACT_MIN_RECORDS, this.live.size)) {
          // The snapshot is taken now, synchronously: it holds exactly the effect of `lines`.
          await this.compact(this.snapshot());
        } else if (lines.length > 0) {
          await this.handle.appendFile(lines.join('\n') + '\n');
          await this.handle.datasync();
        }
        for (const w of waiters) w.resolve();
      } catch (error) {
        // The journal may now lack some records: the next write rewrites it from memory.
        this.compactRequested = true;
        const failure = ioError('write', error);
        for (const w of waiters) w.reject(failure);
      }
    }
  }

  private snapshot(): string {
    const out: string[] = [JSON.stringify({ op: 'meta', v: 1, nextSeq: this.nextSeq, dropped: this.droppedCount } satisfies JournalRecord<T>)];
    for (const e of this.live.values()) out.push(JSON.stringify({ op: 'add', seq: e.seq, alert: e.item, targets: [...e.targets] } satisfies JournalRecord<T>));
    return out.join('\n') + '\n';
  }

  private async compact(text: string): Promise<void> {
    const file = path.join(this.dir, OUTBOX_FILE);
    const tmp = `${file}.tmp`;
    const out = await fsp.open(tmp, 'w');
    try {
      await out.writeFile(text);
      await out.sync();
    } finally {
      await out.close();
    }
    await fsp.rename(tmp, file);
    await syncDir(this.dir);
    const old = this.handle;
    this.handle = await fsp.open(file, 'a');
    await old.close();
    this.deadRecords = 0;
    this.compactRequested = false;
  }
}

async function syncDir(dir: string): Promise<void> {
  let handle: fsp.FileHandle | null = null;
  try {
    handle = await fsp.open(dir, fs.constants.O_RDONLY);
    await handle.sync();
  } catch (error) {
    // Some file systems refuse fsync on a directory (EINVAL/EISDIR); the rename itself stands.
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM') throw error;
  } finally {
    await handle?.close();
  }
}

function ioError(what: 'read' | 'write', error: unknown): VigilError {
  if (error instanceof VigilError) return error;
  const code = (error as NodeJS.ErrnoException).code ?? 'unknown';
  if (code === 'ENOSPC') return new VigilError('DISK_FULL', `cannot ${what} the notification outbox: no space left on the device`, { cause: error });
  return new VigilError('STORE_IO', `cannot ${what} the notification outbox (${code})`, { cause: error });
}

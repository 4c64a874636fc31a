import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { ProbeInfo } from '../../../ingest/index.js';

/**
 * `<stream folder>/source-probe.json`: the last probe of a live source, so that the next start of
 * the stream (a restart, a start after stop, a cluster node opening a restored folder) skips the
 * probe, which at 1 frame/s scans 3.5 s of stream (ingest's `knownProbe`). It names the source only
 * by a hash (a URL may carry credentials): a stream whose source changed ignores the file.
 */
export const SOURCE_PROBE_FILE = 'source-probe.json';

interface SavedProbe {
  version: 1;
  /** sha256 of the source string the probe was taken from (hex). */
  sourceHash: string;
  savedAt: string;
  probe: ProbeInfo;
}

export class SourceProbeFile {
  /** What is on disk (JSON of the probe), so an unchanged probe is not written again. */
  private savedJson: string | null = null;
  /** Writes run one after another; the newest probe wins. */
  private writing: Promise<void> = Promise.resolve();

  constructor(private readonly streamDir: string) {}

  get file(): string {
    return path.join(this.streamDir, SOURCE_PROBE_FILE);
  }

  /** The saved probe of `source`, or null: none, another source's, or unreadable (never throws). */
  load(source: string): ProbeInfo | null {
    // Whatever was saved before no longer counts unless it is read back here.
    this.savedJson = null;
    let saved: Partial<SavedProbe>;
    try {
      saved = JSON.parse(fs.readFileSync(this.file, 'utf8')) as Partial<SavedProbe>;
    } catch {
      return null;
    }
    // Only live streams' probes are saved; ingest checks the shape and ignores it for a finite source.
    if (saved?.version !== 1 || saved.sourceHash !== hashSource(source) || typeof saved.probe !== 'object' || saved.probe === null) return null;
    this.savedJson = JSON.stringify(saved.probe);
    return saved.probe;
  }

  /**
   * Saves `probe` for `source` when it differs from what is saved: temp file, fsync, rename. A
   * failure is reported through `log` and otherwise ignored (ingest never depends on this file);
   * `settled()` tells when it is on disk.
   */
  save(source: string, probe: ProbeInfo, log: (line: string) => void): void {
    const json = JSON.stringify(probe);
    if (json === this.savedJson) return;
    this.savedJson = json;
    const record: SavedProbe = { version: 1, sourceHash: hashSource(source), savedAt: new Date().toISOString(), probe };
    this.writing = this.writing.then(() =>
      writeAtomically(this.file, `${JSON.stringify(record, null, 2)}\n`).catch((error: unknown) => {
        this.savedJson = null;
        log(`${this.file} could not be written (the next start probes the source again): ${(error as Error).message}`);
      }),
    );
  }

  /** Resolves when the writes started so far have finished (tests, shutdown). */
  settled(): Promise<void> {
    return this.writing;
  }
}

function hashSource(source: string): string {
  return createHash('sha256').update(source).digest('hex');
}

async function writeAtomically(file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp`;
  try {
    const handle = await open(tmp, 'w', 0o600);
    try {
      await handle.writeFile(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, file);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
}

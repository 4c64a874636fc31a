/**
 * A stream's watches and alerts on disk, in its folder: watches/watches.json (the whole list, both
 * kinds, replaced atomically: temp file, fsync, rename, fsync of the folder) and
 * watches/alerts.ndjson (one alert a line, appended and fsynced; a torn last line from a crash is
 * skipped on read; compacted by AlertHistory with rewriteAlerts, atomically as watches.json).
 */
import fs from 'node:fs';
import path from 'node:path';
import { VigilError } from '../../../common/errors.js';
import type { Alert, AnyWatch } from './types.js';

const VERSION = 1;

export class WatchStore {
  readonly folder: string;
  private readonly watchesFile: string;
  private readonly alertsFile: string;

  constructor(streamDir: string) {
    this.folder = path.join(streamDir, 'watches');
    this.watchesFile = path.join(this.folder, 'watches.json');
    this.alertsFile = path.join(this.folder, 'alerts.ndjson');
  }

  readWatches(): AnyWatch[] {
    let text: string;
    try {
      text = fs.readFileSync(this.watchesFile, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw new VigilError('STORE_IO', `cannot read ${this.watchesFile}: ${(error as Error).message}`, { cause: error });
    }
    try {
      const parsed = JSON.parse(text) as { version: number; watches: AnyWatch[] };
      if (parsed.version !== VERSION || !Array.isArray(parsed.watches)) throw new Error(`version ${parsed.version}`);
      return parsed.watches;
    } catch (error) {
      throw new VigilError('STORE_CORRUPT', `${this.watchesFile} is damaged: ${(error as Error).message}`, { cause: error });
    }
  }

  writeWatches(watches: readonly AnyWatch[]): void {
    this.replaceFile(this.watchesFile, [`${JSON.stringify({ version: VERSION, watches }, null, 2)}\n`]);
  }

  /** Writes `parts` to a temp file, fsyncs it, renames it over `file` and fsyncs the folder: a crash leaves the old file or the new one. */
  private replaceFile(file: string, parts: Iterable<string>): void {
    fs.mkdirSync(this.folder, { recursive: true });
    const temp = `${file}.tmp`;
    const fd = fs.openSync(temp, 'w');
    try {
      for (const part of parts) fs.writeSync(fd, part);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temp, file);
    syncFolder(this.folder);
  }

  /**
   * A damaged watches.json is moved aside (watches.json.damaged-<ms>), so the stream opens with no
   * watches and the next write does not overwrite what a person may still recover. Returns the new name.
   */
  setAsideWatches(now = Date.now()): string {
    const aside = `${this.watchesFile}.damaged-${now}`;
    fs.renameSync(this.watchesFile, aside);
    return aside;
  }

  appendAlert(alert: Alert): void {
    fs.mkdirSync(this.folder, { recursive: true });
    const fd = fs.openSync(this.alertsFile, 'a');
    try {
      fs.writeSync(fd, `${JSON.stringify(alert)}\n`);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }

  /** Every alert in alerts.ndjson, oldest first. */
  readAlerts(): Alert[] {
    return this.readAlertTail().alerts;
  }

  /**
   * The newest `keep` alerts of alerts.ndjson, oldest first, and how many lines the file holds (torn
   * ones included: they take room until the next compaction).
   */
  readAlertTail(keep = Infinity): { alerts: Alert[]; lines: number } {
    let text: string;
    try {
      text = fs.readFileSync(this.alertsFile, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { alerts: [], lines: 0 };
      throw new VigilError('STORE_IO', `cannot read ${this.alertsFile}: ${(error as Error).message}`, { cause: error });
    }
    const alerts: Alert[] = [];
    let lines = 0;
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      lines++;
      try {
        alerts.push(JSON.parse(line) as Alert);
      } catch {
        // A line torn by a crash mid-append: the alert was never acknowledged as persisted.
      }
      // A file longer than the bound (written before it, or by a larger one) costs at most twice the bound here.
      if (alerts.length > 2 * keep) alerts.splice(0, alerts.length - keep);
    }
    if (alerts.length > keep) alerts.splice(0, alerts.length - keep);
    return { alerts, lines };
  }

  /** Replaces alerts.ndjson with `alerts`, one a line (temp file, fsync, rename, fsync of the folder). */
  rewriteAlerts(alerts: readonly Alert[]): void {
    this.replaceFile(this.alertsFile, alertLines(alerts));
  }
}

/** Alerts as ndjson, a few hundred per write (no file-sized string). */
function* alertLines(alerts: readonly Alert[]): Generator<string> {
  const batch = 256;
  for (let i = 0; i < alerts.length; i += batch) {
    let text = '';
    for (let j = i; j < Math.min(alerts.length, i + batch); j++) text += `${JSON.stringify(alerts[j])}\n`;
    yield text;
  }
}

function syncFolder(folder: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(folder, 'r');
    fs.fsyncSync(fd);
  } catch {
    // Some file systems refuse fsync on a folder; the rename itself is still atomic.
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

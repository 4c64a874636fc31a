/**
 * A stream's watches and alerts on disk, in its folder: watches/watches.json (the whole list,
 * replaced atomically: temp file, fsync, rename, fsync of the folder) and watches/alerts.ndjson
 * (one alert a line, appended and fsynced; a torn last line from a crash is skipped on read).
 */
import fs from 'node:fs';
import path from 'node:path';
import { VigilError } from '../../../common/errors.js';
import type { Alert, Watch } from './types.js';

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

  readWatches(): Watch[] {
    let text: string;
    try {
      text = fs.readFileSync(this.watchesFile, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw new VigilError('STORE_IO', `cannot read ${this.watchesFile}: ${(error as Error).message}`, { cause: error });
    }
    try {
      const parsed = JSON.parse(text) as { version: number; watches: Watch[] };
      if (parsed.version !== VERSION || !Array.isArray(parsed.watches)) throw new Error(`version ${parsed.version}`);
      return parsed.watches;
    } catch (error) {
      throw new VigilError('STORE_CORRUPT', `${this.watchesFile} is damaged: ${(error as Error).message}`, { cause: error });
    }
  }

  writeWatches(watches: readonly Watch[]): void {
    fs.mkdirSync(this.folder, { recursive: true });
    const temp = `${this.watchesFile}.tmp`;
    const fd = fs.openSync(temp, 'w');
    try {
      fs.writeSync(fd, `${JSON.stringify({ version: VERSION, watches }, null, 2)}\n`);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temp, this.watchesFile);
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

  readAlerts(): Alert[] {
    let text: string;
    try {
      text = fs.readFileSync(this.alertsFile, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw new VigilError('STORE_IO', `cannot read ${this.alertsFile}: ${(error as Error).message}`, { cause: error });
    }
    const alerts: Alert[] = [];
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      try {
        alerts.push(JSON.parse(line) as Alert);
      } catch {
        // A line torn by a crash mid-append: the alert was never acknowledged as persisted.
      }
    }
    return alerts;
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

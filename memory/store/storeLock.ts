// One writer per store folder. Two ChunkStores appending to the same segments would interleave
// records and corrupt each other, so opening takes a lock file holding the owner's pid. A lock
// whose pid is no longer alive (the owner crashed or was killed) is taken over.
import fs from 'node:fs';
import path from 'node:path';
import { VigilError } from '../../common/errors.js';

export const LOCK_FILE = 'LOCK';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: the process exists but belongs to someone else.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function acquireStoreLock(dir: string): () => void {
  const file = path.join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, String(process.pid), { flag: 'wx' });
      return () => {
        try {
          fs.unlinkSync(file);
        } catch {
          // Already gone: nothing to release.
        }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = Number(fs.readFileSync(file, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && alive(pid)) {
        throw new VigilError(
          'STORE_LOCKED',
          `memory store ${dir} is already open in process ${pid}${pid === process.pid ? ' (this one)' : ''}`,
        );
      }
      fs.rmSync(file, { force: true }); // stale: its owner is gone
    }
  }
  throw new VigilError('STORE_IO', `could not take the lock of memory store ${dir}`);
}

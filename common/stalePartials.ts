import fs from 'node:fs';
import path from 'node:path';

/**
 * Generated files and folders are built as `<target>.partial-<pid>` (or `.partial-quantized-<pid>`)
 * and renamed into place; a process killed mid-way leaves its partial behind (a probe folder is
 * hundreds of MB). Builders call this first: it removes the partials of `target` whose process no
 * longer exists and keeps those of live processes (a concurrent build of the same target). Best
 * effort: a partial that cannot be listed or removed never fails the build. Leaf module.
 */
export function removeStalePartials(target: string): string[] {
  const removed: string[] = [];
  for (const { file, pid } of partialsOf(target)) {
    if (processExists(pid)) continue;
    try {
      fs.rmSync(file, { recursive: true, force: true });
      removed.push(file);
    } catch {
      // Another builder may be removing it too, or the folder is read-only: left for a later build.
    }
  }
  return removed;
}

/** The partials beside `target` named for it, with the pid in their names. */
function partialsOf(target: string): { file: string; pid: number }[] {
  const dir = path.dirname(path.resolve(target));
  const prefix = `${path.basename(target)}.partial-`;
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return []; // No folder yet: nothing was left in it.
  }
  const found: { file: string; pid: number }[] = [];
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const match = /^(?:quantized-)?([1-9]\d*)$/.exec(name.slice(prefix.length));
    if (match) found.push({ file: path.join(dir, name), pid: Number(match[1]) });
  }
  return found;
}

/**
 * Signal 0 checks for the process without sending anything. ESRCH: gone. EPERM: alive but another
 * user's. Anything else is taken as alive, so an unsure answer never deletes a build in progress.
 * (A pid reused by an unrelated process keeps its partial until that process exits.)
 */
function processExists(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/**
 * CPU time and resident memory of a process and everything it started (a `vigil serve` child and
 * its ffmpeg processes), read from /proc (Linux). CPU counts the live processes' user + system
 * time and what their reaped children left in cutime/cstime (an ffmpeg that exited on a reconnect).
 */
import fs from 'node:fs';
import { CLK_TCK } from './childCpu.js';

export interface TreeUsage {
  /** User + system CPU seconds of the tree so far. */
  cpuS: number;
  /** The root's own share of cpuS (its threads, without its children). */
  rootCpuS: number;
  /** Resident bytes of the root, and of the whole tree. */
  rootRssBytes: number;
  treeRssBytes: number;
  processes: number;
}

function stat(pid: number): { cpuTicks: number; ownTicks: number } | null {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // After "pid (comm) ": utime, stime, cutime, cstime are fields 14-17, here 11-14.
    const own = Number(f[11]) + Number(f[12]);
    return { ownTicks: own, cpuTicks: own + Number(f[13]) + Number(f[14]) };
  } catch {
    return null;
  }
}

function rssBytes(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

function children(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      const text = fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      if (text) for (const c of text.split(' ')) out.push(Number(c));
    }
  } catch {
    // gone meanwhile
  }
  return out;
}

/** Usage of `root` and its descendants now; null once the root has exited. */
export function treeUsage(root: number): TreeUsage | null {
  const rootStat = stat(root);
  if (!rootStat) return null;
  let ticks = rootStat.cpuTicks;
  let treeRss = rssBytes(root);
  let processes = 1;
  const pending = children(root);
  while (pending.length > 0) {
    const pid = pending.pop()!;
    const s = stat(pid);
    if (!s) continue;
    ticks += s.cpuTicks;
    treeRss += rssBytes(pid);
    processes++;
    for (const c of children(pid)) pending.push(c);
  }
  return { cpuS: ticks / CLK_TCK, rootCpuS: rootStat.ownTicks / CLK_TCK, rootRssBytes: rssBytes(root), treeRssBytes: treeRss, processes };
}

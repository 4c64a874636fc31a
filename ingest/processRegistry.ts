/**
 * Every ffmpeg/ffprobe child that ingest/ starts is registered here, so that
 * - nothing outlives the Node process: on exit (and, when a CLI asks for it, on SIGINT/SIGTERM)
 *   every child still running is killed;
 * - tests can assert that no child of ours is left after a stop, a failure or a timeout, by looking
 *   only at the PIDs we started (never at other processes on the machine).
 */
import type { ChildProcess } from 'node:child_process';

export interface TrackedChild {
  pid: number;
  label: string;
  startedAt: number;
  /** Resolves when the process has exited (code, signal). */
  exited: Promise<void>;
}

interface Entry extends TrackedChild {
  proc: ChildProcess;
  alive: boolean;
}

const running = new Map<number, Entry>();
const history: TrackedChild[] = [];
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => killAllChildrenSync());
}

/** Registers a freshly spawned child; returns its handle (or null when spawning failed: no pid). */
export function trackChild(proc: ChildProcess, label: string): TrackedChild | null {
  installExitHook();
  const pid = proc.pid;
  if (pid === undefined) return null;
  let resolveExit!: () => void;
  const exited = new Promise<void>((resolve) => (resolveExit = resolve));
  const alive = proc.exitCode === null && proc.signalCode === null;
  const entry: Entry = { pid, label, startedAt: Date.now(), exited, proc, alive };
  let settled = false;
  const done = () => {
    if (settled) return;
    settled = true;
    entry.alive = false;
    running.delete(pid);
    resolveExit();
  };
  if (!alive) done();
  else {
    running.set(pid, entry);
    // 'exit' always follows a successful spawn; 'error' alone (a failed kill) does not end it.
    proc.once('exit', done);
  }
  const handle: TrackedChild = { pid, label, startedAt: entry.startedAt, exited };
  history.push(handle);
  return handle;
}

/** Kills one tracked child (SIGKILL by default) and waits until it has exited. */
export async function killChild(pid: number, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  const entry = running.get(pid);
  if (!entry) return;
  try {
    entry.proc.kill(signal);
  } catch {
    // already gone
  }
  await entry.exited;
}

/** Children started by this process that are still running. */
export function runningChildren(): TrackedChild[] {
  return [...running.values()].map(({ pid, label, startedAt, exited }) => ({ pid, label, startedAt, exited }));
}

/** Every child ever started by ingest/ in this process (for tests: check each is gone). */
export function startedChildren(): readonly TrackedChild[] {
  return history;
}

export function killAllChildrenSync(): void {
  for (const entry of running.values()) {
    try {
      entry.proc.kill('SIGKILL');
    } catch {
      // ignore
    }
  }
}

let signalHooksInstalled = false;

/**
 * For command-line use: on SIGINT/SIGTERM kill our children, run `onSignal` (e.g. stop sources)
 * and exit with 128 + signal number. Servers that manage their own shutdown should not call this.
 */
export function killChildrenOnSignals(onSignal?: () => Promise<void> | void): void {
  if (signalHooksInstalled) return;
  signalHooksInstalled = true;
  installExitHook();
  const handler = (signal: NodeJS.Signals) => {
    killAllChildrenSync();
    // eslint-disable-next-line @typescript-eslint/no-floating-promises -- the process exits in finally, rejected or not
    void Promise.resolve(onSignal?.()).finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
}

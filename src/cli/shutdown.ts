/**
 * When a long-running command (`vigil serve`) must stop, and how long it may take.
 *
 * A stop is asked for by SIGTERM, SIGINT or SIGHUP, or by the launcher going away: `npx vigil serve`
 * runs node under `npm exec` -> `sh -c`, and a SIGTERM sent to npm (as a supervisor does) kills the
 * shell, which does not pass it on, so node would keep running as an orphan holding its port and its
 * memories' locks. When the command was started by a launcher (npm/npx/yarn/pnpm, which set
 * `npm_execpath`/`npm_lifecycle_event`, or any launcher with VIGIL_EXIT_WITH_PARENT=1), the parent
 * pid is polled: when it changes, the launcher is gone and the command stops as on SIGTERM. An IPC
 * channel closing (a launcher that used `fork`) counts too. VIGIL_EXIT_WITH_PARENT=0 turns this off.
 *
 * The graceful stop has a deadline: past it, or on a second signal, the process exits at once
 * with a log line (exit 1, or 128 + the signal number).
 */

export type ShutdownSignal = 'SIGTERM' | 'SIGINT' | 'SIGHUP';
const SIGNALS: Record<ShutdownSignal, number> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };

/** The parts of `process` used here (tests pass a fake). */
export interface ShutdownProcess {
  readonly ppid: number;
  readonly env: NodeJS.ProcessEnv;
  once(event: string, listener: (...args: unknown[]) => void): unknown;
  removeListener(event: string, listener: (...args: unknown[]) => void): unknown;
  exit(code: number): never | void;
  send?: unknown;
}

export interface ShutdownOptions {
  log: (line: string) => void;
  /** Milliseconds the graceful stop may take before the process exits anyway. */
  graceMs: number;
  /** Poll interval of the launcher check (default 500 ms). */
  parentPollMs?: number;
  process?: ShutdownProcess;
}

export interface ShutdownHandle {
  /** Resolves with the reason (e.g. "SIGTERM", "launcher (pid 12) exited") when a stop is asked for. */
  readonly requested: Promise<string>;
  /** Whether the launcher is being watched (for the start-up log). */
  readonly watchingParent: boolean;
  /** Call when the graceful stop is complete: the deadline no longer applies. */
  finished(): void;
}

/** True when a launcher that may die without passing signals on (npm exec, npm run, ...) started us. */
export function startedByLauncher(env: NodeJS.ProcessEnv): boolean {
  const forced = env.VIGIL_EXIT_WITH_PARENT;
  if (forced === '1' || forced === 'true') return true;
  if (forced === '0' || forced === 'false') return false;
  return Boolean(env.npm_execpath || env.npm_lifecycle_event || env.npm_command);
}

export function watchShutdown(options: ShutdownOptions): ShutdownHandle {
  const proc = options.process ?? (process as unknown as ShutdownProcess);
  const { log, graceMs } = options;
  const launcher = proc.ppid;
  // Started directly by init (pid 1, e.g. systemd) there is no launcher to outlive.
  const watchingParent = startedByLauncher(proc.env) && launcher > 1;
  let resolveRequested!: (reason: string) => void;
  const requested = new Promise<string>((resolve) => (resolveRequested = resolve));
  let stopping = false;
  let done = false;
  let deadline: NodeJS.Timeout | null = null;
  let poll: NodeJS.Timeout | null = null;

  const listeners = new Map<string, (...args: unknown[]) => void>();
  const stop = (reason: string) => {
    if (stopping) return;
    stopping = true;
    if (poll) clearInterval(poll);
    // A second signal exits at once.
    for (const [event, listener] of listeners) proc.removeListener(event, listener);
    for (const signal of Object.keys(SIGNALS) as ShutdownSignal[]) {
      proc.once(signal, () => {
        log(`second ${signal}: exiting now, without waiting for the shutdown to finish`);
        proc.exit(128 + SIGNALS[signal]);
      });
    }
    deadline = setTimeout(() => {
      log(`shutdown did not finish within ${graceMs / 1000} s: exiting now (forced)`);
      proc.exit(1);
    }, graceMs);
    resolveRequested(reason);
  };

  for (const signal of Object.keys(SIGNALS) as ShutdownSignal[]) {
    const listener = () => stop(signal);
    listeners.set(signal, listener);
    proc.once(signal, listener);
  }
  if (watchingParent) {
    poll = setInterval(() => {
      if (proc.ppid !== launcher) stop(`launcher (pid ${launcher}) exited`);
    }, options.parentPollMs ?? 500);
    poll.unref();
    if (proc.send !== undefined) {
      const listener = () => stop('launcher closed the IPC channel');
      listeners.set('disconnect', listener);
      proc.once('disconnect', listener);
    }
  }

  return {
    requested,
    watchingParent,
    finished() {
      if (done) return;
      done = true;
      if (deadline) clearTimeout(deadline);
      // Everything is saved: if some stray handle kept the event loop alive, do not hang on it.
      setTimeout(() => proc.exit(0), 2000).unref();
    },
  };
}

/**
 * Creates fluent-ffmpeg commands bound to one binary, with the PID of every process registered.
 *
 * fluent-ffmpeg keeps the ffmpeg path in a module-wide cache (`setFfmpegPath` changes it for every
 * command), and before each run it spawns `ffmpeg -formats` and `ffmpeg -encoders` (cached per
 * process, whichever binary was asked first) to check codecs we never name. Both are wrong for a
 * process that may use two builds, so each command gets its own path and skips those checks; all
 * options are passed as raw arguments built for the detected version (ffmpegArgs.ts). These are
 * instance overrides of fluent-ffmpeg 2.1.3 internals (the package is pinned and no longer updated);
 * the registry test fails if they stop taking effect.
 */
import ffmpeg from 'fluent-ffmpeg';
import type { ChildProcess } from 'node:child_process';
import type { FfmpegBinary } from './ffmpegBinary.js';
import { type TrackedChild, trackChild } from './processRegistry.js';

type Callback = (err: Error | null, value?: unknown) => void;

interface Internals {
  _getFfmpegPath(cb: Callback): void;
  _checkCapabilities(cb: Callback): void;
  availableEncoders(cb: Callback): void;
  ffmpegProc?: ChildProcess;
}

export interface BoundCommand {
  command: ffmpeg.FfmpegCommand;
  /** Resolves with the tracked child once ffmpeg has been spawned. */
  started: Promise<TrackedChild | null>;
}

export function boundCommand(binary: FfmpegBinary, input: string | undefined, label: string, stdoutLines = 120): BoundCommand {
  const command = input === undefined ? ffmpeg({ stdoutLines }) : ffmpeg(input, { stdoutLines });
  const internals = command as unknown as Internals;
  internals._getFfmpegPath = (cb) => cb(null, binary.ffmpegPath);
  internals._checkCapabilities = (cb) => cb(null);
  internals.availableEncoders = (cb) => cb(null, {});
  let resolveStarted!: (child: TrackedChild | null) => void;
  const started = new Promise<TrackedChild | null>((resolve) => (resolveStarted = resolve));
  command.on('start', () => {
    const proc = internals.ffmpegProc;
    resolveStarted(proc ? trackChild(proc, label) : null);
  });
  // A spawn failure (missing binary) never emits 'start'.
  command.on('error', () => resolveStarted(null));
  return { command, started };
}

/** The ChildProcess behind a running command (fluent-ffmpeg internal). */
export function childOf(command: ffmpeg.FfmpegCommand): ChildProcess | undefined {
  return (command as unknown as Internals).ffmpegProc;
}

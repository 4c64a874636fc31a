/**
 * One ffmpeg decode run (one connection): spawn through fluent-ffmpeg, raw RGB frames over the
 * stdout pipe, per-frame timestamps from stderr, pause/resume for back-pressure, kill on demand.
 * `done` resolves once ffmpeg has exited and every frame it wrote has been handed to `onFrame`
 * (or at once after a kill: frames of a killed run are not wanted).
 */
import { PassThrough } from 'node:stream';
import { boundCommand, childOf } from './ffmpegCommand.js';
import type { DecodeArgs } from './ffmpegArgs.js';
import type { FfmpegBinary } from './ffmpegBinary.js';
import { redactInText } from './ffmpegErrors.js';
import { type DecodedFrameInfo, isCorruptionLine, logLevelOf, parseSelect, parseShowinfo, parseStreamVideo, type StreamVideoInfo } from './ffmpegLog.js';
import { FrameAssembler, type RawFrame } from './frameAssembler.js';
import { killChild, type TrackedChild } from './processRegistry.js';

export interface RunHandlers {
  onFrame(frame: RawFrame): void;
  onDecoded(info: DecodedFrameInfo): void;
  /** A damaged-stream line (decode error); the run goes on. */
  onCorruption?(line: string): void;
  /** The input's video stream as ffmpeg opened it (once per run, before any frame). */
  onInputVideo?(info: StreamVideoInfo): void;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when we killed it (stop, watchdog, restart). */
  killedFor: string | null;
  /** ffmpeg could not be started at all. */
  spawnError: Error | null;
  /** The last stderr lines that are not per-frame chatter (URLs redacted). */
  stderrTail: string[];
  framesOut: number;
  /** Frames whose showinfo line was lost and whose bytes were skipped (should stay 0). */
  lostFrames: number;
  elapsedMs: number;
}

const TAIL_LINES = 80;
const MAX_UNMATCHED_BYTES = 512 * 1024 * 1024;

export class DecodeRun {
  readonly done: Promise<RunResult>;
  private child: TrackedChild | null = null;
  private killedFor: string | null = null;
  private readonly out = new PassThrough({ highWaterMark: 1 << 20 });
  private readonly tail: string[] = [];
  private framesOut = 0;
  private paused = false;

  constructor(binary: FfmpegBinary, input: string, display: string, args: DecodeArgs, handlers: RunHandlers) {
    const assembler = new FrameAssembler((frame) => {
      this.framesOut++;
      handlers.onFrame(frame);
    });
    const startedAt = Date.now();
    const { command, started } = boundCommand(binary, input, `ffmpeg ${display}`);
    command.inputOptions(...args.inputOptions).outputOptions(...args.outputOptions, '-vf', args.filter);
    let inputSeen = false;

    command.on('stderr', (line: string) => {
      const decoded = parseSelect(line);
      if (decoded) return handlers.onDecoded(decoded);
      const sampled = parseShowinfo(line);
      if (sampled) return assembler.header(sampled);
      const level = logLevelOf(line);
      if (level === 'debug' || level === 'trace') return;
      if (!inputSeen && handlers.onInputVideo) {
        const video = parseStreamVideo(line);
        if (video) {
          inputSeen = true;
          handlers.onInputVideo(video);
        }
      }
      if (handlers.onCorruption && isCorruptionLine(line)) handlers.onCorruption(redactInText(line));
      this.tail.push(redactInText(line));
      if (this.tail.length > TAIL_LINES) this.tail.shift();
    });
    this.out.on('data', (chunk: Buffer) => {
      assembler.bytes(chunk);
      // Bytes without frame headers can only mean the log lines are not coming: never buffer without bound.
      // eslint-disable-next-line @typescript-eslint/no-floating-promises -- kill() cannot reject (it awaits only resolve-only promises)
      if (assembler.pendingBytes > MAX_UNMATCHED_BYTES && !this.killedFor) void this.kill('desync: frame data without timestamps');
    });

    let spawnError: Error | null = null;
    let exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
    const finished = new Promise<void>((resolve) => {
      command.on('end', () => resolve());
      command.on('error', (error: Error) => {
        if (!this.child && !/killed|exited|Output stream/.test(error.message)) spawnError = error;
        resolve();
      });
    });
    const stdoutEnded = new Promise<void>((resolve) => {
      this.out.once('end', resolve);
      this.out.once('close', resolve);
    });
    const exited = started.then(async (child) => {
      this.child = child;
      const proc = childOf(command);
      if (child && proc) {
        if (this.killedFor) await killChild(child.pid);
        exit = proc.exitCode !== null || proc.signalCode !== null ? { code: proc.exitCode, signal: proc.signalCode } : null;
        if (!exit) {
          await new Promise<void>((resolve) =>
            proc.once('exit', (code, signal) => {
              exit = { code, signal };
              resolve();
            }),
          );
        }
      }
    });

    this.done = (async () => {
      await finished;
      await exited;
      // After a kill nobody wants the remaining bytes; otherwise wait until every frame went out.
      if (!this.killedFor && !spawnError) await stdoutEnded;
      else this.out.destroy();
      const e = exit as { code: number | null; signal: NodeJS.Signals | null } | null;
      return {
        code: e?.code ?? null,
        signal: e?.signal ?? null,
        killedFor: this.killedFor,
        spawnError,
        stderrTail: [...this.tail],
        framesOut: this.framesOut,
        lostFrames: assembler.lostFrames,
        elapsedMs: Date.now() - startedAt,
      };
    })();

    command.pipe(this.out, { end: true });
  }

  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** Stops reading stdout: ffmpeg blocks on its next write (back-pressure for the block policy). */
  pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.out.pause();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.out.resume();
  }

  /** Kills ffmpeg (SIGKILL) and resolves when it has exited. Safe before the spawn happened. */
  async kill(reason: string): Promise<void> {
    if (!this.killedFor) this.killedFor = reason;
    if (this.child) await killChild(this.child.pid);
    this.out.resume();
    await this.done;
  }
}

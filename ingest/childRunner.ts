/**
 * Runs a short-lived child (ffprobe) to completion with a hard timeout and an abort signal; the child
 * is registered in the process registry and always killed on timeout or abort.
 * (Long-running ffmpeg decodes go through fluent-ffmpeg in `ffmpegProcess.ts`.)
 */
import { spawn } from 'node:child_process';
import { LineSplitter } from './lineSplitter.js';
import { trackChild } from './processRegistry.js';

export interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderrLines: string[];
  timedOut: boolean;
  aborted: boolean;
  /** Set when the binary could not be started at all (ENOENT, EACCES). */
  spawnError: Error | null;
}

export interface RunOptions {
  timeoutMs: number;
  label: string;
  signal?: AbortSignal;
  /** Most stdout bytes kept (default 8 MiB); the rest is discarded. */
  maxStdoutBytes?: number;
  /** Stderr lines kept (the last ones). Default 200. */
  maxStderrLines?: number;
}

export function runChild(command: string, args: string[], options: RunOptions): Promise<ChildResult> {
  return new Promise((resolve) => {
    const maxStdout = options.maxStdoutBytes ?? 8 * 1024 * 1024;
    const maxLines = options.maxStderrLines ?? 200;
    const out: Buffer[] = [];
    let outBytes = 0;
    const lines: string[] = [];
    let timedOut = false;
    let aborted = false;
    let spawnError: Error | null = null;
    let settled = false;

    if (options.signal?.aborted) {
      resolve({ code: null, signal: null, stdout: '', stderrLines: [], timedOut: false, aborted: true, spawnError: null });
      return;
    }
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], windowsHide: true });
    trackChild(child, options.label);
    const splitter = new LineSplitter((line) => {
      lines.push(line);
      if (lines.length > maxLines) lines.shift();
    });
    child.stdout.on('data', (chunk: Buffer) => {
      if (outBytes < maxStdout) out.push(chunk);
      outBytes += chunk.length;
    });
    child.stderr.on('data', (chunk: Buffer) => splitter.push(chunk));

    const kill = () => {
      try {
        child.kill('SIGKILL');
      } catch {
        // gone
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, options.timeoutMs);
    const onAbort = () => {
      aborted = true;
      kill();
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });

    const finish = (code: number | null, signal: NodeJS.Signals | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      splitter.end();
      resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderrLines: lines, timedOut, aborted, spawnError });
    };
    child.on('error', (error) => {
      spawnError = error;
      if (child.pid === undefined) finish(null, null);
    });
    // 'close' comes after 'exit' and after stdio has drained.
    child.on('close', (code, signal) => finish(code, signal));
  });
}

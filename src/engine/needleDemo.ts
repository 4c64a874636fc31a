import fs from 'node:fs';
import path from 'node:path';
import { makeProbeClip, type Needle, PALETTE, type ProbeClipTruth } from '../../ingest/index.js';
import type { VisionLanguageModel } from '../model/visionLanguageModel.js';
import { ingestIntoSession } from './ingestToSession.js';
import { StreamSession } from './streamSession.js';

export interface NeedleDemoOptions {
  /** Folder for the clip and the stream memory (the memory is rebuilt every run). */
  workDir: string;
  durationS?: number;
  needles?: Needle[];
  fps?: number;
  /** Recent frames kept in context; the needles must leave it for the demo to mean anything. */
  windowFrames?: number;
  /** Chunks retrieved per layer. */
  retrieve?: number;
  onStage?: (stage: string, done: number, total: number) => void;
}

export interface DemoRow {
  question: string;
  expected: string;
  answer: string;
  correct: boolean;
  /** The same question with retrieval switched off (sinks + recent window only). */
  windowOnlyAnswer: string;
  evidence: Array<{ chunkId: number; t: number }>;
  firstTokenMs: number;
}

export interface NeedleDemoResult {
  clip: string;
  truth: ProbeClipTruth;
  framesEncoded: number;
  ingestSeconds: number;
  rows: DemoRow[];
  correct: number;
}

const DEFAULT_NEEDLES: Needle[] = [
  { start: 20, duration: 4, background: 'red', square: 'green' },
  { start: 75, duration: 4, background: 'blue', square: 'yellow' },
];

export function needleQuestion(background: string): string {
  return `What color was the square on the ${background} screen?`;
}

/**
 * The built-in end-to-end job: a generated clip with needle scenes, streamed through the whole
 * pipeline (ffmpeg sampling, vision encoder, decoder, disk offload, index) with a window far
 * shorter than the clip, then one question per needle plus one about a color that never appeared.
 * Answers come from the probe-needle model's logits; they are right only if retrieval works.
 */
export async function runNeedleDemo(model: VisionLanguageModel, options: NeedleDemoOptions): Promise<NeedleDemoResult> {
  const durationS = options.durationS ?? 120;
  const needles = options.needles ?? DEFAULT_NEEDLES;
  const stage = options.onStage ?? (() => {});
  fs.mkdirSync(options.workDir, { recursive: true });

  stage('making the probe clip', 0, durationS);
  const clip = await makeProbeClip({
    out: path.join(options.workDir, 'needle-clip.mp4'),
    durationS,
    needles,
    onProgress: (done, total) => stage('making the probe clip', done, total),
  });

  const memoryDir = path.join(options.workDir, 'memory');
  fs.rmSync(memoryDir, { recursive: true, force: true });
  const session = await StreamSession.open(model, { dir: memoryDir, sinkFrames: 1, windowFrames: options.windowFrames ?? 8, fsync: 'none' });
  try {
    const started = performance.now();
    const ingest = await ingestIntoSession(session, clip.clip, {
      fps: options.fps ?? 1,
      onProgress: (p) => stage('streaming the clip', Math.round(p.t), durationS),
    });
    const ingestSeconds = (performance.now() - started) / 1000;

    const present = new Set(clip.truth.needles.map((n) => n.background));
    const absent = (Object.keys(PALETTE) as Array<keyof typeof PALETTE>).find((c) => !present.has(c) && !clip.truth.needles.some((n) => n.square === c));
    const asks = [
      ...clip.truth.needles.map((n) => ({ background: n.background as string, expected: n.square as string })),
      ...(absent ? [{ background: absent as string, expected: 'unknown' }] : []),
    ];
    const rows: DemoRow[] = [];
    for (const [i, a] of asks.entries()) {
      stage('asking', i, asks.length);
      const question = needleQuestion(a.background);
      const answer = await session.ask({ question, retrieve: options.retrieve ?? 8, maxNewTokens: 8 });
      const windowOnly = await session.ask({ question, retrieve: 0, maxNewTokens: 8 });
      const text = answer.text.trim();
      rows.push({
        question,
        expected: a.expected,
        answer: text,
        correct: text === a.expected,
        windowOnlyAnswer: windowOnly.text.trim(),
        evidence: answer.evidence.filter((e) => e.meanScore > 0).map((e) => ({ chunkId: e.chunkId, t: e.tStart })),
        firstTokenMs: answer.retrievalMs + answer.prefillMs,
      });
    }
    stage('done', asks.length, asks.length);
    return { clip: clip.clip, truth: clip.truth, framesEncoded: ingest.framesEncoded, ingestSeconds, rows, correct: rows.filter((r) => r.correct).length };
  } finally {
    await session.dispose();
  }
}

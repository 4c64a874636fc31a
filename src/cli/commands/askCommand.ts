import { Command, InvalidArgumentError } from 'commander';
import { vigilDataDir } from '../../cacheDir.js';
import { type GateSetting, gateSettings } from '../../engine/frameGate.js';
import { openOfflineVideo } from '../../engine/offlineVideo.js';
import { type MemoryHorizon, streamClock } from '../../engine/memoryHorizon.js';
import { ANSWER_MODES, type AnswerMode, type SessionAnswer } from '../../engine/streamSession.js';
import { VigilError } from '../../../common/errors.js';
import type { GraphDtype } from '../../model/graphFiles.js';
import type { QueryTapMode } from '../../model/queryTapLoader.js';
import { VisionLanguageModel } from '../../model/visionLanguageModel.js';
import { parseKeepFull, parseKvShare, parseSetting, parseSize, printJson, tiersFromOptions } from '../options.js';
import { shortBytes } from '../../../common/byteSize.js';
import { DEFAULT_STORAGE, LIMITS, STORAGE_DTYPES } from '../../../common/settings.js';
import { stageProgress } from '../progress.js';
import { resolveModelDir } from '../resolveModel.js';
import { DTYPE_HELP, modelLoadOptions, parseDtypeOption, parseQueryTapsOption, QUERY_TAPS_HELP } from '../modelLoadOptions.js';
import { clockSpan, gateFromOptions, parseGateMaxHold, parseGateOption } from '../gateOption.js';

interface AskOptions {
  model: string;
  mode: string;
  data: string;
  fps: number;
  window: number;
  r: number;
  includeWindow?: boolean;
  maxNewTokens: number;
  storage: string;
  similarity: string;
  rebuild?: boolean;
  gate?: 'off' | number;
  gateMaxHold?: number;
  dtype?: GraphDtype;
  queryTaps?: QueryTapMode;
  json?: boolean;
  budget?: number;
  keepFull?: number;
  kvShare?: number;
  archive?: boolean;
  from?: number;
  to?: number;
}

/** A stream time in seconds (>= 0). */
function parseStreamTime(value: string): number {
  const t = value.trim() === '' ? Number.NaN : Number(value);
  if (!(Number.isFinite(t) && t >= 0)) throw new InvalidArgumentError(`expected a stream time in seconds (>= 0), got '${value}'`);
  return t;
}

/** The memory horizon in one line: how far back it reaches, at which tiers, what the budget forgot. */
function horizonSummary(h: MemoryHorizon): string {
  if (h.from === null || h.to === null) return 'memory horizon: empty';
  const forgotten = h.forgottenBefore === null ? '' : `; forgotten before ${streamClock(h.forgottenBefore)} (${h.forgottenChunks} chunks)`;
  const gaps = h.gaps.length === 0 ? '' : `; ${h.gaps.length}${h.gapsTruncated ? '+' : ''} gaps`;
  return `memory horizon ${streamClock(h.from)}–${streamClock(h.to)} (${h.spans.map((s) => `${s.tier} ${streamClock(s.from)}–${streamClock(s.to)}`).join(', ')})${gaps}${forgotten}`;
}

const clock = (t: number) => `${Math.floor(t / 60)}:${Math.floor(t % 60).toString().padStart(2, '0')}`;

/** The JSON shape of one answer (issue #5): answer, mode, evidence with stream times, timing by phase. */
function answerJson(question: string, a: SessionAnswer) {
  return {
    question,
    answer: a.text.trim(),
    mode: a.mode,
    evidence: a.evidence.map((e) => ({ chunkId: e.chunkId, t: e.tStart, tEnd: e.tEnd, score: e.meanScore, layers: e.layers })),
    timing: {
      retrievalMs: round(a.retrievalMs),
      loadMs: round(a.loadMs),
      prefillMs: round(a.prefillMs),
      ttftMs: round(a.ttftMs),
      totalMs: round(a.totalMs),
    },
    contextTokens: a.contextTokens,
    stopReason: a.stopReason,
    horizon: a.horizon,
    coverage: a.coverage,
    outOfMemory: a.coverage?.outOfMemory ?? false,
    archive: { ...a.archive, reencodeMs: round(a.archive.reencodeMs) },
  };
}

const round = (ms: number) => Math.round(ms * 10) / 10;

/** --gate / --gate-max-hold as the offline memory's gate (defaults when neither is given). */
function gateOption(options: AskOptions): { gate?: GateSetting } {
  const request = gateFromOptions(options.gate, options.gateMaxHold);
  return request === undefined ? {} : { gate: gateSettings(request) };
}

export function askCommand(): Command {
  return new Command('ask')
    .description('answer questions about a video file, keeping its memory on disk for the next question')
    .argument('<video>', 'video file')
    .argument('<questions...>', 'one or more questions')
    .option('--model <model>', 'model folder or probe model name', 'probe-needle')
    .option('--mode <mode>', `how the answer context is chosen: ${ANSWER_MODES.filter((m) => m !== 'oracle').join(', ')}`, 'rekv')
    .option('--r <n>', 'frames retrieved per layer (rekv) or sampled (uniform)', parseSetting('r'), LIMITS.r.default)
    .option('--fps <f>', 'frames sampled per second', parseSetting('fps'), LIMITS.fps.default)
    .option('--window <frames>', 'recent frames kept in context while encoding', parseSetting('window'), LIMITS.window.default)
    .option('--include-window', 'rekv: also put the last window of frames in the answer context')
    .option('--max-new-tokens <n>', 'most tokens per answer', parseSetting('maxTokens'), LIMITS.maxTokens.default)
    .option('--storage <dtype>', `KV storage on disk: ${STORAGE_DTYPES.join(', ')}`, DEFAULT_STORAGE)
    .option('--similarity <space>', 'retrieval score: ip (dot product, as ReKV) or cosine', 'ip')
    .option('--data <dir>', 'where video memories are kept', vigilDataDir())
    .option('--rebuild', 're-encode the video even if its memory exists')
    .option('--gate <off|threshold>', `frame gating: a frame is encoded only when this fraction of it changed since the last encoded frame (default ${LIMITS.gateThreshold.default}; off: every frame)`, parseGateOption)
    .option('--gate-max-hold <s>', `frame gating: encode a frame at least every s seconds of video (default ${LIMITS.gateMaxHoldSec.default})`, parseGateMaxHold)
    .option('--budget <size>', "disk budget of the video's memory, e.g. 200MB (1e6 bytes) or 1.5GiB (2^30 bytes); the oldest frames go first (default: none)", parseSize)
    .option('--keep-full <s>', `memory tiers under --budget: the newest seconds of video kept at the --storage dtype; older frames may be demoted to 4-bit KV (default ${LIMITS.keepFullSec.default})`, parseKeepFull)
    .option('--kv-share <x>', `memory tiers under --budget: share of the budget (0..1) that frames holding KV may take before the oldest go to the archive (default ${LIMITS.kvShare.default})`, parseKvShare)
    .option('--no-archive', 'memory tiers under --budget: no archive tier (KV tiers only, then the oldest frames are deleted)')
    .option('--from <s>', 'only memory from this stream time (seconds); a time memory no longer holds is answered with a statement, without the model', parseStreamTime)
    .option('--to <s>', 'only memory up to this stream time (seconds)', parseStreamTime)
    .option('--dtype <dtype>', DTYPE_HELP, parseDtypeOption)
    .option('--query-taps <mode>', QUERY_TAPS_HELP, parseQueryTapsOption)
    .option('--json', 'print JSON: {answer, mode, evidence:[{chunkId, t, score}], timing:{...}, horizon, coverage, outOfMemory, archive} (an array for several questions)')
    .action(async (video: string, questions: string[], options: AskOptions) => {
      const modes: readonly AnswerMode[] = ANSWER_MODES.filter((m) => m !== 'oracle');
      if (!modes.includes(options.mode as AnswerMode)) throw new VigilError('BAD_INPUT', `unknown --mode '${options.mode}' (${modes.join(', ')})`);
      if (!(STORAGE_DTYPES as readonly string[]).includes(options.storage)) throw new VigilError('BAD_INPUT', `--storage must be ${STORAGE_DTYPES.join(', ')}, got '${options.storage}'`);
      if (options.similarity !== 'ip' && options.similarity !== 'cosine') throw new VigilError('BAD_INPUT', `--similarity must be ip or cosine, got '${options.similarity}'`);
      for (const q of questions) if (q.trim() === '') throw new VigilError('BAD_INPUT', 'a question is empty');
      if (options.from !== undefined && options.to !== undefined && options.from > options.to) throw new VigilError('BAD_INPUT', `--from (${options.from}) must be <= --to (${options.to})`);
      // As the API's from/to: a range given one end runs from 0 or to now.
      const timeRange = options.from === undefined && options.to === undefined ? undefined : { start: options.from ?? 0, end: options.to ?? Number.MAX_SAFE_INTEGER };
      const tiers = tiersFromOptions(options);
      if (tiers !== undefined && options.budget === undefined) throw new VigilError('BAD_INPUT', '--keep-full, --kv-share and --no-archive set the memory tiers under a disk budget: give --budget too');
      const quiet = options.json ?? false;
      const model = await VisionLanguageModel.load(resolveModelDir(options.model, { quiet, dtype: options.dtype }), modelLoadOptions(options));
      const progress = stageProgress('encoding', quiet);
      // Ctrl-C stops the encode cleanly; the memory stays marked incomplete and the next run resumes it.
      const abort = new AbortController();
      const onSigint = () => abort.abort();
      process.once('SIGINT', onSigint);
      const started = Date.now();
      try {
        const memory = await openOfflineVideo(model, video, {
          dataDir: options.data,
          fps: options.fps,
          windowFrames: options.window,
          storageDtype: options.storage as 'float32',
          similarity: options.similarity,
          rebuild: options.rebuild ?? false,
          ...gateOption(options),
          ...(options.budget !== undefined ? { budget: options.budget } : {}),
          ...(tiers !== undefined ? { tiers } : {}),
          signal: abort.signal,
          onProgress: (p) => {
            const rate = p.framesEncoded / Math.max(1e-3, (Date.now() - started) / 1000);
            const total = Math.max(Math.ceil(p.durationS ?? p.t), Math.ceil(p.t), 1);
            progress.update(Math.min(Math.round(p.t), total), total, `${p.framesEncoded} frames${p.framesGated > 0 ? ` (+${p.framesGated} gated)` : ''}, ${rate.toFixed(1)} frames/s`);
          },
        });
        progress.stop();
        try {
          const answers = [];
          for (const question of questions) {
            // Archived frames a question retrieves are re-encoded first (about a frame's encode each).
            const recall = stageProgress('re-encoding archived frames', quiet);
            const answer = await memory.session.ask({
              question,
              mode: options.mode as AnswerMode,
              retrieve: options.r,
              includeWindow: options.includeWindow ?? false,
              maxNewTokens: options.maxNewTokens,
              ...(timeRange ? { timeRange } : {}),
              onProgress: (p) => recall.update(p.done, p.total, `${p.done} of ${p.total} frames`),
            });
            recall.stop();
            answers.push(answerJson(question, answer));
          }
          if (options.json) return printJson(answers.length === 1 ? answers[0] : answers);
          const disk = memory.session.store.stats();
          const budget = disk.budgetBytes === null ? '' : `, ${shortBytes(disk.diskBytes)} on disk of budget ${shortBytes(disk.budgetBytes)} (${((100 * disk.diskBytes) / disk.budgetBytes).toFixed(1)}%)`;
          process.stderr.write(`${memory.status} memory of ${memory.framesEncoded} frames${memory.framesGated > 0 ? ` (+${memory.framesGated} gated: unchanged, covered by the previous frame's span)` : ''} (${memory.dir})${budget}\n`);
          process.stderr.write(`${horizonSummary(memory.session.horizon())}\n`);
          for (const a of answers) {
            const strongest = [...a.evidence].sort((x, y) => y.score - x.score).slice(0, 5).sort((x, y) => x.t - y.t);
            const cited = strongest.map((e) => `${clockSpan(e.t, e.tEnd)} (${e.score.toFixed(2)})`).join(', ') || '-';
            if (a.outOfMemory) {
              process.stdout.write(`Q: ${a.question}\nA: ${a.answer}\n   not in memory: no model call\n`);
              continue;
            }
            const archived = a.archive.retrieved > 0 ? `; archive: ${a.archive.reencoded} of ${a.archive.retrieved} retrieved frames re-encoded (${Math.round(a.archive.reencodeMs)} ms)` : '';
            process.stdout.write(`Q: ${a.question}\nA: ${a.answer}\n   ${a.mode}: strongest evidence at ${cited}; first token ${Math.round(a.timing.ttftMs)} ms${archived}\n`);
            if (a.coverage?.note) process.stdout.write(`   ${a.coverage.note}\n`);
          }
        } finally {
          await memory.session.dispose();
        }
      } finally {
        process.off('SIGINT', onSigint);
        progress.stop();
        await model.dispose();
      }
    });
}

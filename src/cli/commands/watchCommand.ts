import { Command } from 'commander';
import { type GateSetting, gateSettings } from '../../engine/frameGate.js';
import { streamClock } from '../../engine/memoryHorizon.js';
import { type OfflineWatchResult, watchVideo } from '../../engine/watches/offlineWatch.js';
import { DEFAULT_MAX_INTERVAL_SEC, MAX_WATCH_SECONDS, WATCH_TRIGGERS, type WatchTrigger } from '../../engine/watches/types.js';
import { VigilError } from '../../../common/errors.js';
import { LIMITS } from '../../../common/settings.js';
import type { GraphDtype } from '../../model/graphFiles.js';
import type { QueryTapMode } from '../../model/queryTapLoader.js';
import { VisionLanguageModel } from '../../model/visionLanguageModel.js';
import { parseNumber, parseSetting, printJson } from '../options.js';
import { stageProgress } from '../progress.js';
import { resolveModelDir } from '../resolveModel.js';
import { DTYPE_HELP, modelLoadOptions, parseDtypeOption, parseQueryTapsOption, QUERY_TAPS_HELP } from '../modelLoadOptions.js';
import { gateFromOptions, parseGateMaxHold, parseGateOption } from '../gateOption.js';

interface WatchOptions {
  model: string;
  trigger: string;
  pattern?: string;
  fps: number;
  window: number;
  maxInterval: number;
  gate?: 'off' | number;
  gateMaxHold?: number;
  dtype?: GraphDtype;
  queryTaps?: QueryTapMode;
  json?: boolean;
}

const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;

function resultJson(video: string, r: OfflineWatchResult) {
  return {
    video,
    question: r.watch.question,
    trigger: r.watch.trigger,
    ...(r.watch.pattern !== undefined ? { pattern: r.watch.pattern } : {}),
    spans: r.spans.map((s) => ({ from: s.from, to: s.to, answer: s.answer, checkMs: round(s.checkMs), evidence: s.evidence.map((e) => ({ t: e.t, tEnd: e.tEnd, score: round(e.score, 4), change: round(e.change, 2) })) })),
    alerts: r.alerts.map((a) => ({ t: a.t, answer: a.answer, previousAnswer: a.previousAnswer, checkMs: round(a.checkMs) })),
    checks: r.checks.map((c) => ({ t: c.t, reason: c.reason, answer: c.answer, condition: c.condition })),
    framesEncoded: r.framesEncoded,
    framesGated: r.framesGated,
    modelChecks: r.stats.checks,
    checksByReason: r.stats.checksByReason,
    checkFraction: round(r.checkFraction, 4),
    prefilterMsPerFrame: round(r.prefilterMsPerFrame, 4),
    errors: r.stats.errors,
  };
}

export function watchCommand(): Command {
  return new Command('watch')
    .description('scan a video file with a standing question: when the condition became true and false again, with evidence')
    .argument('<video>', 'video file')
    .argument('<question>', 'the question the watch asks')
    .option('--trigger <trigger>', `when the condition holds: ${WATCH_TRIGGERS.join(', ')}`, 'answer-changes')
    .option('--pattern <re>', 'answer-matches: a regular expression matched against the answer (case-insensitive)')
    .option('--model <model>', 'model folder or probe model name', 'probe-needle')
    .option('--fps <f>', 'frames sampled per second', parseSetting('fps'), LIMITS.fps.default)
    .option('--window <frames>', 'recent frames the model check sees (1: the condition is about the newest frame; with N it ends N frames after the scene does)', parseSetting('window'), 1)
    .option('--max-interval <s>', 'model check at least every s seconds of video, whatever the prefilter says', parseNumber(1, MAX_WATCH_SECONDS), DEFAULT_MAX_INTERVAL_SEC)
    .option('--gate <off|threshold>', 'frame gating, as for vigil ask (unchanged frames are not encoded, so not scored)', parseGateOption)
    .option('--gate-max-hold <s>', 'frame gating: encode a frame at least every s seconds of video', parseGateMaxHold)
    .option('--dtype <dtype>', DTYPE_HELP, parseDtypeOption)
    .option('--query-taps <mode>', QUERY_TAPS_HELP, parseQueryTapsOption)
    .option('--json', 'print JSON: {spans:[{from, to, answer, evidence}], alerts, checks, framesEncoded, modelChecks, checkFraction, prefilterMsPerFrame}')
    .action(async (video: string, question: string, options: WatchOptions) => {
      if (!WATCH_TRIGGERS.includes(options.trigger as WatchTrigger)) throw new VigilError('BAD_INPUT', `unknown --trigger '${options.trigger}' (${WATCH_TRIGGERS.join(', ')})`);
      if (options.pattern !== undefined && options.trigger !== 'answer-matches') throw new VigilError('BAD_INPUT', '--pattern is for --trigger answer-matches');
      const gateRequest = gateFromOptions(options.gate, options.gateMaxHold);
      const gate: GateSetting | undefined = gateRequest === undefined ? undefined : gateSettings(gateRequest);
      const quiet = options.json ?? false;
      const model = await VisionLanguageModel.load(resolveModelDir(options.model, { quiet, dtype: options.dtype }), modelLoadOptions(options));
      const progress = stageProgress('watching', quiet);
      const abort = new AbortController();
      const onSigint = () => abort.abort();
      process.once('SIGINT', onSigint);
      try {
        const result = await watchVideo(
          model,
          video,
          { question, trigger: options.trigger as WatchTrigger, maxIntervalSec: options.maxInterval, ...(options.pattern !== undefined ? { pattern: options.pattern } : {}) },
          {
            fps: options.fps,
            windowFrames: options.window,
            ...(gate !== undefined ? { gate } : {}),
            signal: abort.signal,
            onProgress: (p) => progress.update(Math.round(p.t), Math.max(1, Math.ceil(p.durationS ?? p.t)), `${p.framesEncoded} frames`),
          },
        );
        progress.stop();
        if (abort.signal.aborted) throw new VigilError('CANCELLED', 'interrupted');
        if (options.json) return printJson(resultJson(video, result));
        printTable(result);
      } finally {
        process.off('SIGINT', onSigint);
        progress.stop();
        await model.dispose();
      }
    });
}

function printTable(r: OfflineWatchResult): void {
  const out = process.stdout;
  const changes = r.watch.trigger === 'answer-changes';
  out.write(`watch: ${JSON.stringify(r.watch.question)} (${r.watch.trigger}${r.watch.pattern !== undefined ? ` /${r.watch.pattern}/i` : ''})\n`);
  if (r.spans.length === 0) out.write(changes ? 'the answer never changed\n' : 'the condition never became true\n');
  else {
    out.write(`| ${changes ? 'answer changed at' : 'became true'} | ${changes ? 'changed again' : 'false again'} | answer | evidence (s: score) | check |\n|---|---|---|---|---|\n`);
    for (const s of r.spans) {
      const evidence = s.evidence.map((e) => `${streamClock(e.t)}: ${e.score.toFixed(2)}`).join(', ') || '-';
      out.write(`| ${streamClock(s.from)} | ${s.to === null ? '(end)' : streamClock(s.to)} | ${s.answer} | ${evidence} | ${Math.round(s.checkMs)} ms |\n`);
    }
  }
  const pct = (100 * r.checkFraction).toFixed(1);
  process.stderr.write(
    `${r.framesEncoded} frames encoded${r.framesGated > 0 ? ` (+${r.framesGated} gated)` : ''}; ${r.stats.checks} model checks (${pct}% of frames: ${Object.entries(r.stats.checksByReason).map(([k, v]) => `${k} ${v}`).join(', ')}); prefilter ${r.prefilterMsPerFrame.toFixed(3)} ms/frame${r.stats.errors > 0 ? `; ${r.stats.errors} errors (${r.stats.lastError})` : ''}\n`,
  );
}

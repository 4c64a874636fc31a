/**
 * The V-NIAH grid (design.md section 6): which clip lengths, needle depths, answer modes and KV
 * storage dtypes are measured, and the retrieval/window settings they share. Flags arrive as text;
 * every bad value is a VigilError naming the flag, so the CLI exits 2 with one clear line.
 */
import type { KvStorageDtype } from '../../memory/frameChunk.js';
import { type AnswerMode, ANSWER_MODES } from '../engine/streamSession.js';
import { VigilError } from '../../common/errors.js';
import { STORAGE_DTYPES as STREAM_STORAGE_DTYPES } from '../../common/settings.js';

/** Every dtype a stream can store its KV in (common/settings.ts), in table order; `--dtypes` picks among them. */
export const STORAGE_DTYPES: readonly KvStorageDtype[] = STREAM_STORAGE_DTYPES;

/** The design grid's dtypes (kivi4 on request: `--dtypes float32,kivi4`). */
export const DEFAULT_EVAL_DTYPES: readonly KvStorageDtype[] = ['float32', 'float16', 'int8'];

/** Modes in the order tables and panels show them: baselines around rekv, oracle last (the ceiling). */
export const EVAL_MODES: readonly AnswerMode[] = ['full', 'window', 'uniform', 'rekv', 'oracle'];

export interface VniahSettings {
  /** Clip lengths in minutes (fractions allowed). */
  lengthsMin: number[];
  /** Needle depths, % of the clip (0 = at the start, 100 = ending at the last second). */
  depthsPct: number[];
  modes: AnswerMode[];
  /** Storage dtypes rekv is measured on (one ingest of each clip per dtype). */
  dtypes: KvStorageDtype[];
  /** Storage dtypes the other modes are measured on. */
  baselineDtypes: KvStorageDtype[];
  /** rekv: chunks per layer; uniform: frames. */
  retrieve: number;
  windowFrames: number;
  sinkFrames: number;
  /** `full` runs only when frames x tokens per frame is at most this. */
  fullLimitTokens: number;
  /** Layer whose retrieved set decides the answer (probe-needle: 1; its layer 0 scores are all 0). */
  signalLayer: number;
  /** Length of each needle scene, whole seconds (= frames at 1 fps). */
  needleSeconds: number;
  /** Sampling rate of the stream. */
  fps: number;
  clip: { width: number; height: number; fps: number };
  maxNewTokens: number;
  /** Each question is asked this many times; times are the median (ms-scale timings are noisy). */
  repeats: number;
}

export const DEFAULT_VNIAH_SETTINGS: VniahSettings = {
  lengthsMin: [2, 10, 30, 60],
  depthsPct: [0, 25, 50, 75, 100],
  modes: [...EVAL_MODES],
  dtypes: [...DEFAULT_EVAL_DTYPES],
  baselineDtypes: ['float32'],
  retrieve: 64,
  windowFrames: 16,
  sinkFrames: 1,
  fullLimitTokens: 16384,
  signalLayer: 1,
  needleSeconds: 2,
  fps: 1,
  // 2 fps clips: sampling at 1 fps only needs the frame at each whole second, and generating a
  // 60-minute clip takes ~2.5x less time than at the generator's default 10 fps.
  clip: { width: 640, height: 360, fps: 2 },
  // An answer is one color word then end-of-utterance; 4 leaves room to see a model that rambles.
  maxNewTokens: 4,
  repeats: 5,
};

/** Flags as the command line gives them (all optional text). */
export interface VniahFlags {
  lengths?: string;
  depths?: string;
  modes?: string;
  dtypes?: string;
  baselineDtypes?: string;
  retrieve?: string;
  window?: string;
  sinks?: string;
  fullLimit?: string;
  signalLayer?: string;
  needleSeconds?: string;
  repeats?: string;
}

function list(flag: string, text: string): string[] {
  const items = text.split(',').map((s) => s.trim());
  if (items.length === 0 || items.some((s) => s === '')) throw new VigilError('BAD_INPUT', `--${flag} must be a comma-separated list without empty items, got '${text}'`);
  if (new Set(items).size !== items.length) throw new VigilError('BAD_INPUT', `--${flag} lists a value twice: '${text}'`);
  return items;
}

function numberList(flag: string, text: string, min: number, max: number, what: string): number[] {
  return list(flag, text).map((item) => {
    const n = Number(item);
    if (!Number.isFinite(n) || n < min || n > max) throw new VigilError('BAD_INPUT', `--${flag}: '${item}' is not ${what}`);
    return n;
  });
}

function integer(flag: string, text: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isInteger(n) || n < min || n > max) {
    throw new VigilError('BAD_INPUT', `--${flag} must be an integer in ${min}..${max === Number.MAX_SAFE_INTEGER ? 'inf' : max}, got '${text}'`);
  }
  return n;
}

function dtypeList(flag: string, text: string): KvStorageDtype[] {
  return list(flag, text).map((d) => {
    if (!(STORAGE_DTYPES as readonly string[]).includes(d)) throw new VigilError('BAD_INPUT', `--${flag}: unknown storage dtype '${d}' (${STORAGE_DTYPES.join(', ')})`);
    return d as KvStorageDtype;
  });
}

/** Settings from flags over the defaults; throws VigilError on the first bad flag. */
export function vniahSettingsFromFlags(flags: VniahFlags): VniahSettings {
  const s: VniahSettings = structuredClone(DEFAULT_VNIAH_SETTINGS);
  if (flags.lengths !== undefined) {
    // Whole seconds: needle starts are whole seconds, so each needle covers exactly its frames.
    s.lengthsMin = numberList('lengths', flags.lengths, 0, 24 * 60, 'a clip length in minutes in (0, 1440]').map((m) => {
      if (m <= 0 || Math.round(m * 60) < 1) throw new VigilError('BAD_INPUT', `--lengths: ${m} minutes is shorter than one second`);
      return m;
    });
  }
  if (flags.depths !== undefined) s.depthsPct = numberList('depths', flags.depths, 0, 100, 'a depth in 0..100 (% of the clip)');
  if (flags.modes !== undefined) {
    s.modes = list('modes', flags.modes).map((m) => {
      if (!(ANSWER_MODES as readonly string[]).includes(m)) throw new VigilError('BAD_INPUT', `--modes: unknown mode '${m}' (${EVAL_MODES.join(', ')})`);
      return m as AnswerMode;
    });
  }
  if (flags.dtypes !== undefined) s.dtypes = dtypeList('dtypes', flags.dtypes);
  if (flags.baselineDtypes !== undefined) s.baselineDtypes = dtypeList('baseline-dtypes', flags.baselineDtypes);
  if (flags.retrieve !== undefined) s.retrieve = integer('retrieve', flags.retrieve, 1, 100_000);
  if (flags.window !== undefined) s.windowFrames = integer('window', flags.window, 1, 100_000);
  if (flags.sinks !== undefined) s.sinkFrames = integer('sinks', flags.sinks, 0, 1000);
  if (flags.fullLimit !== undefined) s.fullLimitTokens = integer('full-limit', flags.fullLimit, 1);
  if (flags.signalLayer !== undefined) s.signalLayer = integer('signal-layer', flags.signalLayer, 0, 1000);
  if (flags.needleSeconds !== undefined) s.needleSeconds = integer('needle-seconds', flags.needleSeconds, 1, 3600);
  if (flags.repeats !== undefined) s.repeats = integer('repeats', flags.repeats, 1, 1000);
  s.modes.sort((a, b) => EVAL_MODES.indexOf(a) - EVAL_MODES.indexOf(b));
  s.depthsPct.sort((a, b) => a - b);
  s.lengthsMin.sort((a, b) => a - b);
  return s;
}

/** Storage dtypes a clip is ingested with: those rekv needs, then those the baselines need. */
export function sessionDtypes(s: VniahSettings): KvStorageDtype[] {
  const wanted = new Set<KvStorageDtype>();
  if (s.modes.includes('rekv')) for (const d of s.dtypes) wanted.add(d);
  if (s.modes.some((m) => m !== 'rekv')) for (const d of s.baselineDtypes) wanted.add(d);
  return STORAGE_DTYPES.filter((d) => wanted.has(d));
}

/** Modes measured on a session of the given storage dtype. */
export function modesFor(s: VniahSettings, dtype: KvStorageDtype): AnswerMode[] {
  return s.modes.filter((m) => (m === 'rekv' ? s.dtypes : s.baselineDtypes).includes(dtype));
}

/**
 * Expands image / video placeholders into the exact text HF's processors produce, before
 * tokenisation (contract §3 step 1, §4.1, §4.2). Pure string functions: the token count that comes
 * out must equal the number of vision-feature rows, so these mirror HF character for character
 * (SmolVLM: `processing_smolvlm.py` `get_image_prompt_string` and `process_video`).
 */
import { VigilError } from '../../common/errors.js';

const IMAGE = '<image>';
const FAKE = '<fake_token_around_image>';
const GLOBAL = '<global-img>';

/** Appended once after the last frame of a video (HF `DEFAULT_MEDIA_OUTTRO`), not after each frame. */
export const SMOLVLM_VIDEO_OUTRO = '\n\n';

/**
 * The text that replaces one `<image>` for SmolVLM. Split images: a row-major tile grid, `\n` after
 * every row, then a blank-line separator (`\n` before the global block, so two `\n` after the last
 * row) and the global image. Unsplit (rows = cols = 0): the global block alone, with no leading `\n`.
 */
export function expandSmolVlmImage(rows: number, cols: number, imageSeqLen: number): string {
  checkCount('imageSeqLen', imageSeqLen, 1);
  checkCount('rows', rows, 0);
  checkCount('cols', cols, 0);
  if ((rows === 0) !== (cols === 0)) {
    throw new VigilError('BAD_INPUT', `Tile grid must be 0x0 (unsplit) or at least 1x1 (got ${rows}x${cols}).`);
  }
  const features = IMAGE.repeat(imageSeqLen);
  const globalBlock = `${FAKE}${GLOBAL}${features}${FAKE}`;
  if (rows === 0) return globalBlock;
  let text = '';
  for (let r = 1; r <= rows; r++) {
    for (let c = 1; c <= cols; c++) text += `${FAKE}<row_${r}_col_${c}>${features}`;
    text += '\n';
  }
  return `${text}\n${globalBlock}`;
}

/** Replaces each `<image>` in `prompt`, in order, with its expansion. */
export function expandSmolVlmPrompt(
  prompt: string,
  images: Array<{ rows: number; cols: number }>,
  imageSeqLen: number,
): string {
  // Split first, as HF does, so the `<image>` tokens inside an expansion are never re-expanded.
  const pieces = splitOnImages(prompt, images.length);
  const expansions = images.map(({ rows, cols }) => expandSmolVlmImage(rows, cols, imageSeqLen));
  return pieces.reduce((out, piece, i) => out + piece + (expansions[i] ?? ''), '');
}

/**
 * `MM:SS` of a frame time, as HF formats it: whole minutes zero-padded to 2 digits (not wrapped at
 * 60, so 4503 s is `75:03`, 6000 s is `100:00`) and whole seconds, both truncated.
 */
export function smolVlmFrameTimestamp(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) {
    throw new VigilError('BAD_INPUT', `Frame time must be a non-negative number of seconds (got ${seconds}).`);
  }
  const minutes = Math.floor(seconds / 60);
  const secs = Math.floor(seconds % 60);
  return `${String(minutes).padStart(2, '0')}:${String(secs).padStart(2, '0')}`;
}

/**
 * One video frame: `\nFrame from MM:SS:` + the unsplit image block. HF appends
 * `SMOLVLM_VIDEO_OUTRO` once after the last frame, so it is not part of this string.
 *
 * Token count: fixed for a fixed minutes width. From 100:00 on the minutes field gains a digit;
 * SmolLM2's tokenizer splits digits one per token, so each frame costs one more token from then on.
 * Re-tokenise rather than assume a per-frame constant across that boundary.
 */
export function smolVlmFramePrompt(seconds: number, imageSeqLen: number): string {
  return `\nFrame from ${smolVlmFrameTimestamp(seconds)}:${expandSmolVlmImage(0, 0, imageSeqLen)}`;
}

/**
 * The text that precedes the frames (HF `DEFAULT_VIDEO_INTRO`): frame count in English words as
 * num2words writes it ("sixty-four", "one hundred and one"), duration as Python's
 * `str(timedelta(seconds=int(duration)))`, i.e. `H:MM:SS`. HF says "frames" even for one frame.
 */
export function smolVlmVideoHeader(frameCount: number, durationSeconds: number): string {
  checkCount('frameCount', frameCount, 0);
  if (!Number.isFinite(durationSeconds) || durationSeconds < 0) {
    throw new VigilError(
      'BAD_INPUT',
      `Video duration must be a non-negative number of seconds (got ${durationSeconds}).`,
    );
  }
  return (
    `You are provided the following series of ${numberToWords(frameCount)} frames ` +
    `from a ${pythonTimedelta(Math.floor(durationSeconds))} [H:MM:SS] video.\n`
  );
}

/**
 * The whole replacement for one `<video>` placeholder, as HF's `process_video` builds it:
 * header, one block per frame, then the outro.
 */
export function expandSmolVlmVideo(frameSeconds: number[], durationSeconds: number, imageSeqLen: number): string {
  const frames = frameSeconds.map((t) => smolVlmFramePrompt(t, imageSeqLen)).join('');
  return smolVlmVideoHeader(frameSeconds.length, durationSeconds) + frames + SMOLVLM_VIDEO_OUTRO;
}

/** LLaVA-OneVision: each `<image>` becomes tokensPerImage[i] copies (contract §4.2, 729 or 730). */
export function expandLlavaOnevisionPrompt(prompt: string, tokensPerImage: number[]): string {
  tokensPerImage.forEach((n, i) => checkCount(`tokensPerImage[${i}]`, n, 1));
  const pieces = splitOnImages(prompt, tokensPerImage.length);
  return pieces.reduce((out, piece, i) => out + piece + IMAGE.repeat(tokensPerImage[i] ?? 0), '');
}

function splitOnImages(prompt: string, expected: number): string[] {
  const pieces = prompt.split(IMAGE);
  const found = pieces.length - 1;
  if (found !== expected) {
    throw new VigilError(
      'BAD_INPUT',
      `Prompt has ${found} ${IMAGE} placeholder(s) but ${expected} image(s) were given.`,
    );
  }
  return pieces;
}

function checkCount(name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) {
    throw new VigilError('BAD_INPUT', `${name} must be an integer >= ${min} (got ${value}).`);
  }
}

/** Python `str(timedelta(seconds=s))` for whole seconds: `H:MM:SS`, or `D day(s), H:MM:SS`. */
function pythonTimedelta(totalSeconds: number): string {
  const days = Math.floor(totalSeconds / 86400);
  const rest = totalSeconds % 86400;
  const h = Math.floor(rest / 3600);
  const m = Math.floor((rest % 3600) / 60);
  const s = rest % 60;
  const clock = `${h}:${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}`;
  return days === 0 ? clock : `${days} day${days === 1 ? '' : 's'}, ${clock}`;
}

const SMALL = [
  'zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine', 'ten',
  'eleven', 'twelve', 'thirteen', 'fourteen', 'fifteen', 'sixteen', 'seventeen', 'eighteen', 'nineteen',
];
const TENS = ['', '', 'twenty', 'thirty', 'forty', 'fifty', 'sixty', 'seventy', 'eighty', 'ninety'];
const SCALES: Array<[number, string]> = [
  [1_000_000_000, 'billion'],
  [1_000_000, 'million'],
  [1_000, 'thousand'],
  [100, 'hundred'],
];

/**
 * English cardinal words with num2words' (lang en) joining rules: hyphen inside 21..99, " and " before
 * a remainder under 100 that follows a hundred or larger unit, ", " before a larger remainder
 * (1100 -> "one thousand, one hundred", 1001 -> "one thousand and one").
 */
function numberToWords(n: number): string {
  if (n < 20) return SMALL[n]!;
  if (n < 100) {
    const unit = n % 10;
    return unit === 0 ? TENS[Math.floor(n / 10)]! : `${TENS[Math.floor(n / 10)]}-${SMALL[unit]}`;
  }
  const [scale, name] = SCALES.find(([value]) => n >= value)!;
  const head = `${numberToWords(Math.floor(n / scale))} ${name}`;
  const rest = n % scale;
  if (rest === 0) return head;
  return `${head}${rest < 100 ? ' and ' : ', '}${numberToWords(rest)}`;
}

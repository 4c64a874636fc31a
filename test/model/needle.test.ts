/**
 * probe-needle (docs/needle-model.md): the hand-constructed model answers "What color was the square
 * on the <color> screen?" with the square's color only when the frame with that background is in the
 * decoder's context, and ' unknown' otherwise. Everything runs through the real path: sharp frames,
 * video-frame preprocessing, the ONNX vision encoder, StreamEncoder (pre-RoPE chunks re-rotated to
 * compact positions), greedy `generate`, and the query taps / chunk representatives for retrieval.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type ort from 'onnxruntime-node';
import type { FrameChunk } from '../../memory/frameChunk.js';
import { RamStream, type RamEncodedFrame } from '../helpers/ramStream.js';
import { generate } from '../../src/model/generate.js';
import { CONST_VALUE, NEEDLE_COLORS, NEEDLE_DIMS, type NeedleColor, NUM_COLORS } from '../../src/model/probe/needleLayout.js';
import type { PreprocessedImage } from '../../src/model/preprocess/imagePreprocessor.js';
import { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import { batchFrames, haystackFrame, needleFrame, preprocessFrame, toPng } from '../helpers/needleFrames.js';
import { probeModelDir } from '../helpers/probeModels.js';

const FRAMES = 181; // 1 needle + 180 haystack frames, 15 tokens each
const EVERYTHING = 1000; // a window that never evicts

interface Needle {
  index: number;
  background: NeedleColor;
  square: NeedleColor;
}

interface Stream {
  encoder: RamStream;
  /** Every chunk, in time order, whether still in the window or evicted. */
  chunks: FrameChunk[];
  needleChunks: Map<NeedleColor, FrameChunk>;
}

interface Answer {
  text: string;
  stopReason: string;
  /** The greedy first token and its logit minus the best other token's logit. */
  top: number;
  margin: number;
}

/** One needle per palette background (its square another palette color), spread over the stream. */
const PALETTE_NEEDLES: Needle[] = NEEDLE_COLORS.map((background, c) => ({
  index: 10 + 22 * c,
  background,
  square: NEEDLE_COLORS[(c + 3) % NUM_COLORS]!,
}));

function question(color: string): string {
  return `What color was the square on the ${color} screen?`;
}

describe('probe-needle', () => {
  let model: VisionLanguageModel;
  let haystack: ort.Tensor[];
  const needleImages = new Map<string, PreprocessedImage>();

  before(async () => {
    model = await VisionLanguageModel.load(probeModelDir('probe-needle'));
    // Haystack frames differ only in noise, which the encoder averages away: encode a few once, reuse.
    haystack = [];
    for (const sigma of [20, 30, 40]) haystack.push(await model.encodeImages(await preprocessFrame(model, await haystackFrame({ sigma }))));
  });
  after(async () => model?.dispose());

  async function needleImage(background: NeedleColor, square: NeedleColor): Promise<PreprocessedImage> {
    const key = `${background}/${square}`;
    let image = needleImages.get(key);
    if (!image) {
      image = await preprocessFrame(model, await needleFrame({ background, square }));
      needleImages.set(key, image);
    }
    return image;
  }

  /** Streams are the slow part (181 decoder prefills each): tests that need the same one share it. */
  const streams = new Map<string, Promise<Stream>>();
  function stream(needles: Needle[], windowFrames = EVERYTHING): Promise<Stream> {
    const key = JSON.stringify({ needles, windowFrames });
    let s = streams.get(key);
    if (!s) {
      s = encodeStream(needles, windowFrames);
      streams.set(key, s);
    }
    return s;
  }

  /** Encodes FRAMES frames at 1 fps: haystack everywhere except the needles (full encodeFrame path). */
  async function encodeStream(needles: Needle[], windowFrames: number): Promise<Stream> {
    const encoder = await RamStream.create(model, { sinkFrames: 1, windowFrames });
    const chunks: FrameChunk[] = [];
    const needleChunks = new Map<NeedleColor, FrameChunk>();
    for (let i = 0; i < FRAMES; i++) {
      const needle = needles.find((n) => n.index === i);
      let encoded: RamEncodedFrame;
      if (needle) {
        encoded = await encoder.encodeFrame(await needleImage(needle.background, needle.square), i);
        needleChunks.set(needle.background, encoded.chunk);
      } else {
        encoded = await encoder.encodeFeatures(haystack[i % haystack.length]!, i);
      }
      chunks.push(encoded.chunk);
    }
    return { encoder, chunks, needleChunks };
  }

  /** The question turn over [prefix | chunks]: greedy answer, and the first token's logit margin. */
  async function ask(s: Stream, color: string, context: readonly FrameChunk[] = s.encoder.window.contextChunks): Promise<Answer> {
    const assembled = s.encoder.assembleContext(context);
    const ids = model.tokenizer.encode(s.encoder.format.question(question(color)));
    const inputsEmbeds = await model.embed(ids);
    const first = await model.decoder.step({ inputsEmbeds, past: s.encoder.toCache(assembled), logits: 'last' });
    let top = 0;
    for (let v = 1; v < first.logits.length; v++) if (first.logits[v]! > first.logits[top]!) top = v;
    let other = -Infinity;
    first.logits.forEach((value, v) => {
      if (v !== top && value > other) other = value;
    });
    const result = await generate(model, { inputsEmbeds, past: s.encoder.toCache(assembled) }, { maxNewTokens: 4 });
    return { text: result.text, stopReason: result.stopReason, top, margin: first.logits[top]! - other };
  }

  function tokenOf(text: string): number {
    const ids = model.tokenizer.encode(text);
    assert.equal(ids.length, 1, `'${text}' is one token`);
    return ids[0]!;
  }

  function assertAnswer(answer: Answer, expected: string, minMargin = 20): void {
    assert.equal(answer.text, ` ${expected}`);
    assert.equal(answer.stopReason, 'eos', 'stops on end-of-utterance right after the answer word');
    assert.equal(answer.top, tokenOf(` ${expected}`));
    assert.ok(answer.margin > minMargin, `margin ${answer.margin} <= ${minMargin}`);
  }

  it('answers the square color of the one needle among 180 haystack frames, at several depths', async (t) => {
    const margins: string[] = [];
    for (const depth of [0.05, 0.5, 0.95]) {
      const index = Math.round(depth * (FRAMES - 1));
      const started = performance.now();
      const s = await stream([{ index, background: 'red', square: 'green' }]);
      const encodeMs = performance.now() - started;
      assert.equal(s.encoder.window.contextChunks.length, FRAMES, 'the window holds every frame');
      const answer = await ask(s, 'red');
      assertAnswer(answer, 'green');
      margins.push(`depth ${depth} (frame ${index}): ' green' by ${answer.margin.toFixed(2)} (stream encode ${encodeMs.toFixed(0)} ms)`);
    }
    for (const line of margins) t.diagnostic(line);
  });

  it("answers ' unknown' when no frame has the asked background", async (t) => {
    const s = await stream([{ index: 90, background: 'red', square: 'green' }]);
    const lines: string[] = [];
    for (const color of NEEDLE_COLORS.filter((c) => c !== 'red')) {
      const answer = await ask(s, color);
      assertAnswer(answer, 'unknown');
      lines.push(`${color}: ' unknown' by ${answer.margin.toFixed(2)}`);
    }
    t.diagnostic(lines.join('; '));
  });

  it('needles with different backgrounds: each question gets its own square color', async (t) => {
    // Eight needles, one per palette background, each with another palette color as its square.
    const s = await stream(PALETTE_NEEDLES);
    const lines: string[] = [];
    for (const needle of PALETTE_NEEDLES) {
      const answer = await ask(s, needle.background);
      assertAnswer(answer, needle.square);
      lines.push(`${needle.background} -> ' ${needle.square}' by ${answer.margin.toFixed(2)}`);
    }
    t.diagnostic(lines.join('; '));
  });

  it("control: with the needle evicted and not retrieved the answer is ' unknown'; putting its chunk back restores it", async (t) => {
    const s = await stream([{ index: 60, background: 'magenta', square: 'white' }], 8);
    const needle = s.needleChunks.get('magenta')!;
    const window = s.encoder.window.contextChunks;
    assert.ok(!window.includes(needle), 'the needle frame left the window');
    const evicted = await ask(s, 'magenta', window);
    assertAnswer(evicted, 'unknown');
    assert.notEqual(evicted.text, ' white');
    // The same context plus the needle's chunk (as retrieval would load it) answers again.
    const retrieved = await ask(s, 'magenta', [...window, needle]);
    assertAnswer(retrieved, 'white');
    t.diagnostic(`evicted: ' unknown' by ${evicted.margin.toFixed(2)}; needle chunk restored: ' white' by ${retrieved.margin.toFixed(2)}`);
  });

  it('retrieval: the mean pre-RoPE question query scores the asked needle highest at layer 2, haystack ~0', async (t) => {
    const needles = PALETTE_NEEDLES;
    const s = await stream(needles);
    const { numHeads, numKvHeads, headDim: D } = model.decoder.info;
    const rep = numHeads / numKvHeads;
    const layer = 1;
    const score = (qbar: Float64Array, chunk: FrameChunk): number => {
      const kbar = chunk.representatives[layer]!;
      let sum = 0;
      for (let g = 0; g < numKvHeads; g++) {
        for (let h = g * rep; h < (g + 1) * rep; h++) {
          for (let d = 0; d < D; d++) sum += qbar[h * D + d]! * kbar[g * D + d]!;
        }
      }
      return sum;
    };
    const contexts: Array<[string, readonly FrameChunk[]]> = [
      ['prefix', []],
      ['prefix | window', s.chunks.slice(0, 1).concat(s.chunks.slice(-16))],
    ];
    const lines: string[] = [];
    for (const [name, chunks] of contexts) {
      const past = s.encoder.toCache(s.encoder.assembleContext(chunks));
      for (const needle of needles) {
        const ids = model.tokenizer.encode(question(needle.background)); // raw question, no chat template
        const out = await model.decoder.step({ inputsEmbeds: await model.embed(ids), past, logits: 'none', queries: true });
        const taps = out.queries![layer]!;
        const qbar = new Float64Array(numHeads * D);
        for (let row = 0; row < ids.length; row++) for (let i = 0; i < qbar.length; i++) qbar[i]! += taps[row * qbar.length + i]! / ids.length;
        const target = s.needleChunks.get(needle.background)!;
        let best = s.chunks[0]!;
        let worstOther = 0;
        for (const chunk of s.chunks) {
          if (score(qbar, chunk) > score(qbar, best)) best = chunk;
          if (chunk !== target) worstOther = Math.max(worstOther, Math.abs(score(qbar, chunk)));
        }
        const needleScore = score(qbar, target);
        assert.equal(best.chunkId, target.chunkId, `${name}: '${needle.background}' retrieves chunk ${best.chunkId}, not the needle ${target.chunkId}`);
        assert.ok(needleScore > 1, `${name}: needle score ${needleScore}`);
        assert.ok(worstOther < 1e-4, `${name}: another chunk scores ${worstOther}`);
        if (needle.background === 'red' || needle.background === 'orange') {
          lines.push(`${name}, '${needle.background}': needle ${needleScore.toFixed(3)}, max |other| ${worstOther.toExponential(1)}`);
        }
      }
    }
    t.diagnostic(lines.join('; '));
  });

  it('vision encoder: every palette color as background and as square on 640x360 frames, gray noise as none', async () => {
    type Case = { name: string; background: NeedleColor | 'none'; square: NeedleColor | 'none'; image: PreprocessedImage };
    const cases: Case[] = [];
    for (const background of NEEDLE_COLORS) {
      for (const square of NEEDLE_COLORS) {
        if (square === background) continue;
        cases.push({ name: `${background}/${square}`, background, square, image: await preprocessFrame(model, await needleFrame({ background, square })) });
      }
    }
    // Other frame shapes and a smaller square, and a PNG file instead of raw pixels.
    const extra: Array<[string, NeedleColor, NeedleColor, Parameters<typeof needleFrame>[0]]> = [
      ['1280x720', 'cyan', 'orange', { background: 'cyan', square: 'orange', width: 1280, height: 720 }],
      ['480x480', 'yellow', 'blue', { background: 'yellow', square: 'blue', width: 480, height: 480 }],
      ['360x640 portrait', 'white', 'red', { background: 'white', square: 'red', width: 360, height: 640, squareFraction: 0.25 }],
      ['square 1/4 of height', 'green', 'magenta', { background: 'green', square: 'magenta', squareFraction: 0.25 }],
    ];
    for (const [name, background, square, options] of extra) cases.push({ name, background, square, image: await preprocessFrame(model, await needleFrame(options)) });
    cases.push({ name: 'png', background: 'orange', square: 'red', image: await preprocessFrame(model, await toPng(await needleFrame({ background: 'orange', square: 'red' }))) });
    for (const [sigma, mean] of [[10, 128], [30, 128], [50, 128], [30, 100], [30, 160]] as const) {
      cases.push({ name: `gray noise mean ${mean} sigma ${sigma}`, background: 'none', square: 'none', image: await preprocessFrame(model, await haystackFrame({ sigma, mean })) });
    }

    const features = await model.encodeImages(batchFrames(cases.map((c) => c.image)));
    const T = model.tokensPerImage;
    const H = model.decoder.info.hiddenSize;
    assert.deepEqual(features.dims, [cases.length * T, H]);
    const data = features.data as Float32Array;
    const classOf = (row: number, first: number): NeedleColor | 'none' => {
      const hot = NEEDLE_COLORS.filter((_, c) => data[row * H + first + c] === 1);
      const cold = NEEDLE_COLORS.every((_, c) => data[row * H + first + c] === 0 || data[row * H + first + c] === 1);
      assert.ok(cold && hot.length <= 1, `row ${row}: not a one-hot`);
      return hot[0] ?? 'none';
    };
    const wrong: string[] = [];
    cases.forEach((c, i) => {
      for (let token = 0; token < T; token++) {
        const row = i * T + token;
        assert.equal(data[row * H + NEEDLE_DIMS.const], CONST_VALUE);
        const got = `${classOf(row, NEEDLE_DIMS.background)}/${classOf(row, NEEDLE_DIMS.square)}`;
        if (got !== `${c.background}/${c.square}`) wrong.push(`${c.name} token ${token}: got ${got}`);
      }
    });
    assert.deepEqual(wrong, []);
  });
});

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { VigilError } from '../../common/errors.js';
import {
  SMOLVLM_VIDEO_OUTRO,
  expandLlavaOnevisionPrompt,
  expandSmolVlmImage,
  expandSmolVlmPrompt,
  expandSmolVlmVideo,
  smolVlmFramePrompt,
  smolVlmFrameTimestamp,
  smolVlmVideoHeader,
} from '../../src/model/promptExpansion.js';

const F = '<fake_token_around_image>';
const G = '<global-img>';
const I = '<image>';

function badInput(fn: () => unknown, mention: string): void {
  assert.throws(fn, (e: unknown) => e instanceof VigilError && e.code === 'BAD_INPUT' && e.message.includes(mention));
}

describe('expandSmolVlmImage', () => {
  test('unsplit: the global block only, no leading newline', () => {
    assert.equal(expandSmolVlmImage(0, 0, 3), `${F}${G}${I}${I}${I}${F}`);
  });

  test('1x2 grid: tiles, newline after the row, blank line, global block', () => {
    const expected =
      `${F}<row_1_col_1>${I}${I}` +
      `${F}<row_1_col_2>${I}${I}` +
      '\n' +
      `\n${F}${G}${I}${I}${F}`;
    assert.equal(expandSmolVlmImage(1, 2, 2), expected);
  });

  test('2x2 grid, row-major', () => {
    const expected =
      `${F}<row_1_col_1>${I}${F}<row_1_col_2>${I}\n` +
      `${F}<row_2_col_1>${I}${F}<row_2_col_2>${I}\n` +
      `\n${F}${G}${I}${F}`;
    assert.equal(expandSmolVlmImage(2, 2, 1), expected);
  });

  test('64 tokens per tile: 4x4 gives 17 x 64 image tokens', () => {
    const text = expandSmolVlmImage(4, 4, 64);
    assert.equal(text.split(I).length - 1, 17 * 64);
    assert.equal(text.split(F).length - 1, 16 + 2);
  });

  test('rejects half-empty grids and bad lengths', () => {
    badInput(() => expandSmolVlmImage(0, 2, 64), '0x2');
    badInput(() => expandSmolVlmImage(1, 1, 0), 'imageSeqLen');
    badInput(() => expandSmolVlmImage(-1, -1, 64), 'rows');
  });
});

describe('expandSmolVlmPrompt', () => {
  test('replaces each <image> in order', () => {
    const prompt = `<|im_start|>User:${I}Compare with ${I}?<end_of_utterance>\nAssistant:`;
    const expected =
      `<|im_start|>User:${F}<row_1_col_1>${I}\n\n${F}${G}${I}${F}` +
      `Compare with ${F}${G}${I}${F}?<end_of_utterance>\nAssistant:`;
    assert.equal(expandSmolVlmPrompt(prompt, [{ rows: 1, cols: 1 }, { rows: 0, cols: 0 }], 1), expected);
  });

  test('no images: prompt unchanged', () => {
    assert.equal(expandSmolVlmPrompt('hello', [], 64), 'hello');
  });

  test('count mismatch -> BAD_INPUT', () => {
    badInput(() => expandSmolVlmPrompt(`${I}${I}`, [{ rows: 0, cols: 0 }], 64), '2 <image> placeholder(s) but 1');
    badInput(() => expandSmolVlmPrompt('text', [{ rows: 0, cols: 0 }], 64), '0 <image>');
  });
});

describe('SmolVLM2 video text', () => {
  test('timestamps: MM:SS, truncated, minutes not wrapped', () => {
    assert.equal(smolVlmFrameTimestamp(0), '00:00');
    assert.equal(smolVlmFrameTimestamp(59.9), '00:59');
    assert.equal(smolVlmFrameTimestamp(65), '01:05');
    assert.equal(smolVlmFrameTimestamp(4503), '75:03');
    assert.equal(smolVlmFrameTimestamp(6000.5), '100:00');
    badInput(() => smolVlmFrameTimestamp(-1), 'Frame time');
    badInput(() => smolVlmFrameTimestamp(Number.NaN), 'Frame time');
  });

  test('frame prompt: newline, label, unsplit block, no per-frame outro', () => {
    assert.equal(smolVlmFramePrompt(65, 2), `\nFrame from 01:05:${F}${G}${I}${I}${F}`);
  });

  test('header: frame count in words, H:MM:SS duration', () => {
    assert.equal(
      smolVlmVideoHeader(64, 125.7),
      'You are provided the following series of sixty-four frames from a 0:02:05 [H:MM:SS] video.\n',
    );
    assert.equal(
      smolVlmVideoHeader(1, 3600),
      'You are provided the following series of one frames from a 1:00:00 [H:MM:SS] video.\n',
    );
    assert.ok(smolVlmVideoHeader(3, 90061).includes('three frames from a 1 day, 1:01:01 [H:MM:SS]'));
    assert.ok(smolVlmVideoHeader(0, 0).includes(' zero frames from a 0:00:00 '));
  });

  test('frame counts in num2words style', () => {
    const words = (n: number) => smolVlmVideoHeader(n, 0).split(' series of ')[1]!.split(' frames')[0];
    assert.equal(words(13), 'thirteen');
    assert.equal(words(20), 'twenty');
    assert.equal(words(21), 'twenty-one');
    assert.equal(words(100), 'one hundred');
    assert.equal(words(101), 'one hundred and one');
    assert.equal(words(342), 'three hundred and forty-two');
    assert.equal(words(1001), 'one thousand and one');
    assert.equal(words(1100), 'one thousand, one hundred');
    assert.equal(words(21000), 'twenty-one thousand');
  });

  test('whole video block: header, frames, one outro', () => {
    const expected =
      'You are provided the following series of two frames from a 0:01:10 [H:MM:SS] video.\n' +
      `\nFrame from 00:01:${F}${G}${I}${F}` +
      `\nFrame from 01:02:${F}${G}${I}${F}` +
      '\n\n';
    assert.equal(expandSmolVlmVideo([1, 62.4], 70.9, 1), expected);
    assert.equal(SMOLVLM_VIDEO_OUTRO, '\n\n');
  });
});

describe('expandLlavaOnevisionPrompt', () => {
  test('each <image> becomes N copies', () => {
    assert.equal(
      expandLlavaOnevisionPrompt(`<|im_start|>user\n${I}\nA ${I} B<|im_end|>`, [2, 3]),
      `<|im_start|>user\n${I}${I}\nA ${I}${I}${I} B<|im_end|>`,
    );
    assert.equal(expandLlavaOnevisionPrompt(I, [729]).split(I).length - 1, 729);
  });

  test('mismatch and bad counts -> BAD_INPUT', () => {
    badInput(() => expandLlavaOnevisionPrompt(I, [729, 729]), '1 <image> placeholder(s) but 2');
    badInput(() => expandLlavaOnevisionPrompt(I, [0]), 'tokensPerImage[0]');
  });
});

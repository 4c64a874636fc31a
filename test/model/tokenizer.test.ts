import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { VlmTokenizer } from '../../src/model/tokenizer.js';
import type { ChatMessage } from '../../src/model/tokenizer.js';
import { buildProbeTokenizer } from '../../src/model/probe/probeTokenizer.js';
import type { ProbeTokenizerSpec } from '../../src/model/probe/probeTokenizer.js';
import { VigilError } from '../../common/errors.js';

const SPEC: ProbeTokenizerSpec = {
  vocabSize: 49280,
  words: [' red', ' green', ' blue', ' color', ' square', 'What', ' screen', '?', 'Frame', ' from', ' circle', ' what'],
};

// SmolVLM2's ids, written out independently of the builder so a builder bug cannot hide here.
const EXPECTED_SPECIAL_IDS: Record<string, number> = {
  '<|endoftext|>': 0,
  '<|im_start|>': 1,
  '<|im_end|>': 2,
  '<global-img>': 49152,
  '<row_1_col_1>': 49153,
  '<row_1_col_6>': 49158,
  '<row_2_col_1>': 49159,
  '<row_3_col_4>': 49153 + 2 * 6 + 3,
  '<row_6_col_6>': 49188,
  '<fake_token_around_image>': 49189,
  '<image>': 49190,
  '<end_of_utterance>': 49279,
};

const IMAGE_QUESTION: ChatMessage[] = [
  { role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'What color?' }] },
];

/**
 * Smallest tokenizer.json the loader accepts (optional pipeline stages omitted on purpose), for
 * tests about files and templates: loading the full 49280-entry probe vocab costs ~100 ms each.
 */
const TINY_TOKENIZER = { model: { type: 'BPE', vocab: { a: 0, b: 1, ab: 2 }, merges: [['a', 'b']] } };

let root: string;
let probeDir: string;
let probe: VlmTokenizer;
let probeFiles: { tokenizer: string; config: string };
let buildMs: number;
let loadMs: number;

async function writeModel(dir: string, files: Record<string, unknown>): Promise<string> {
  await mkdir(dir, { recursive: true });
  for (const [name, content] of Object.entries(files)) {
    await writeFile(path.join(dir, name), typeof content === 'string' ? content : JSON.stringify(content));
  }
  return dir;
}

async function rejectsWithVigilError(promise: Promise<unknown>, code: string, mentions: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof VigilError, `expected a VigilError, got ${String(error)}`);
    assert.equal(error.code, code);
    assert.match(error.message, mentions);
    return true;
  });
}

before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'vigil-tokenizer-'));
  const built = performance.now();
  const { tokenizerJson, tokenizerConfigJson } = buildProbeTokenizer(SPEC);
  buildMs = performance.now() - built;
  probeFiles = { tokenizer: JSON.stringify(tokenizerJson), config: JSON.stringify(tokenizerConfigJson) };
  probeDir = await writeModel(path.join(root, 'probe'), {
    'tokenizer.json': probeFiles.tokenizer,
    'tokenizer_config.json': probeFiles.config,
  });
  const start = performance.now();
  probe = await VlmTokenizer.load(probeDir);
  loadMs = performance.now() - start;
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('probe tokenizer', () => {
  it('has exactly the SmolVLM2 vocab size and loads quickly', () => {
    assert.equal(probe.vocabSize, 49280);
    for (let id = 0; id < 49280; id++) assert.notEqual(probe.idToToken(id), undefined, `id ${id} has no token`);
    assert.equal(probe.idToToken(49280), undefined);
    // Generous bounds (shared CI machines); typical: build ~100 ms, load ~100 ms.
    assert.ok(buildMs < 2000, `building took ${buildMs.toFixed(0)} ms`);
    assert.ok(loadMs < 2000, `loading took ${loadMs.toFixed(0)} ms`);
  });

  it('encodes every spec word as one token', () => {
    for (const word of SPEC.words) {
      const ids = probe.encode(word);
      assert.equal(ids.length, 1, `${JSON.stringify(word)} -> ${JSON.stringify(ids)}`);
      assert.equal(probe.decode(ids), word);
    }
    // In context the leading-space words still come out whole.
    assert.equal(probe.encode('What color?').length, 3);
    // Digits are one token each, as in SmolLM2's tokenizer, so frame timestamps cost the same.
    assert.deepEqual(probe.encode('00:12').map((id) => probe.idToToken(id)), ['0', '0', ':', '1', '2']);
  });

  it('puts special tokens at SmolVLM2 ids', () => {
    for (const [token, id] of Object.entries(EXPECTED_SPECIAL_IDS)) {
      assert.equal(probe.tokenToId(token), id, token);
      assert.equal(probe.idToToken(id), token);
    }
    for (let r = 1; r <= 6; r++) {
      for (let c = 1; c <= 6; c++) assert.equal(probe.tokenToId(`<row_${r}_col_${c}>`), 49153 + (r - 1) * 6 + (c - 1));
    }
    const specials = probe.specialTokenIds();
    for (const id of Object.values(EXPECTED_SPECIAL_IDS)) assert.ok(specials.has(id), `id ${id} not special`);
    assert.equal(specials.size, 3 + 1 + 36 + 2 + 1);
  });

  it('round-trips ASCII and UTF-8 text', () => {
    for (const text of ['Frame from 00:12: what color?', 'café ✓', '  spaced\tout\nlines  ', 'emoji 🎥 and 日本語', '']) {
      assert.equal(probe.decode(probe.encode(text)), text);
    }
    assert.equal(probe.decode(Int32Array.from(probe.encode('typed arrays too'))), 'typed arrays too');
  });

  it('maps special tokens written in text to their ids', () => {
    const ids = probe.encode('Look<image><image> here<end_of_utterance>');
    assert.deepEqual(ids.filter((id) => id === 49190), [49190, 49190]);
    assert.equal(ids.at(-1), 49279);
    assert.equal(probe.decode(ids), 'Look<image><image> here<end_of_utterance>');
    assert.equal(probe.decode(ids, { skipSpecialTokens: true }), 'Look here');
  });

  it('renders the SmolVLM chat format', () => {
    assert.equal(probe.applyChatTemplate(IMAGE_QUESTION), '<|im_start|>User:<image>What color?<end_of_utterance>\nAssistant:');
    assert.equal(
      probe.applyChatTemplate([{ role: 'user', content: 'hi' }], { addGenerationPrompt: true }),
      '<|im_start|>User: hi<end_of_utterance>\nAssistant:',
    );
    assert.equal(
      probe.applyChatTemplate([{ role: 'user', content: [{ type: 'text', text: 'hi' }] }]),
      '<|im_start|>User: hi<end_of_utterance>\nAssistant:',
    );
    assert.equal(
      probe.applyChatTemplate(
        [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: [{ type: 'video' }, { type: 'text', text: 'What moved?' }] },
          { role: 'assistant', content: 'A red square.' },
        ],
        { addGenerationPrompt: false },
      ),
      '<|im_start|>System: Be brief.<end_of_utterance>\nUser: <video>What moved?<end_of_utterance>\nAssistant: A red square.<end_of_utterance>\n',
    );
  });

  it('tokenizes a rendered prompt with the specials as single ids', () => {
    const ids = probe.encode(probe.applyChatTemplate(IMAGE_QUESTION));
    assert.equal(ids[0], 1);
    assert.ok(ids.includes(49190));
    assert.ok(ids.includes(49279));
  });

  it('is deterministic', () => {
    const again = buildProbeTokenizer({ ...SPEC, words: [...SPEC.words] });
    assert.ok(JSON.stringify(again.tokenizerJson) === probeFiles.tokenizer, 'tokenizer.json differs between builds');
    assert.ok(JSON.stringify(again.tokenizerConfigJson) === probeFiles.config, 'tokenizer_config.json differs between builds');
  });

  it('rejects words the pre-tokenizer would split', () => {
    assert.throws(() => buildProbeTokenizer({ vocabSize: 49280, words: ['red square'] }), /pre-token/);
    assert.throws(() => buildProbeTokenizer({ vocabSize: 49280, words: ['12'] }), /pre-token/);
  });
});

describe('VlmTokenizer.load errors', () => {
  it('names a missing folder', async () => {
    await rejectsWithVigilError(VlmTokenizer.load(path.join(root, 'nope')), 'FILE_NOT_FOUND', /nope/);
  });

  it('names a missing tokenizer.json', async () => {
    const dir = await writeModel(path.join(root, 'no-tokenizer'), { 'tokenizer_config.json': {} });
    await rejectsWithVigilError(VlmTokenizer.load(dir), 'NOT_A_MODEL', /tokenizer\.json is missing/);
  });

  it('names a missing tokenizer_config.json', async () => {
    const dir = await writeModel(path.join(root, 'no-config'), { 'tokenizer.json': TINY_TOKENIZER });
    await rejectsWithVigilError(VlmTokenizer.load(dir), 'NOT_A_MODEL', /tokenizer_config\.json is missing/);
  });

  it('names broken JSON', async () => {
    const dir = await writeModel(path.join(root, 'broken'), { 'tokenizer.json': '{"model": {', 'tokenizer_config.json': {} });
    await rejectsWithVigilError(VlmTokenizer.load(dir), 'CORRUPT_MODEL', /tokenizer\.json is not valid JSON/);
  });

  it('accepts a minimal tokenizer.json without the optional pipeline stages', async () => {
    const dir = await writeModel(path.join(root, 'tiny'), { 'tokenizer.json': TINY_TOKENIZER, 'tokenizer_config.json': {} });
    const tokenizer = await VlmTokenizer.load(dir);
    assert.deepEqual(tokenizer.encode('ab'), [2]);
    assert.equal(tokenizer.vocabSize, 3);
    assert.equal(tokenizer.decode([]), '');
  });

  it('explains a missing chat template', async () => {
    const dir = await writeModel(path.join(root, 'no-template'), { 'tokenizer.json': TINY_TOKENIZER, 'tokenizer_config.json': {} });
    const tokenizer = await VlmTokenizer.load(dir);
    assert.throws(
      () => tokenizer.applyChatTemplate(IMAGE_QUESTION),
      (error: unknown) => error instanceof VigilError && error.code === 'BAD_CONFIG' && /no chat template/.test(error.message),
    );
  });
});

describe('chat template sources', () => {
  async function withTemplateFiles(name: string, files: Record<string, unknown>, config: Record<string, unknown> = {}): Promise<VlmTokenizer> {
    const dir = await writeModel(path.join(root, name), {
      'tokenizer.json': TINY_TOKENIZER,
      'tokenizer_config.json': { eos_token: '<|im_end|>', ...config },
      ...files,
    });
    return VlmTokenizer.load(dir);
  }

  it('reads chat_template.jinja when tokenizer_config has none', async () => {
    const tokenizer = await withTemplateFiles('jinja', { 'chat_template.jinja': '{{ messages[0].content }}|{{ eos_token }}' });
    assert.equal(tokenizer.applyChatTemplate([{ role: 'user', content: 'x' }]), 'x|<|im_end|>');
  });

  it('prefers chat_template.jinja over tokenizer_config (processor first; test/model/chatTemplatePrecedence.test.ts has the full order)', async () => {
    const tokenizer = await withTemplateFiles('jinja-first', { 'chat_template.jinja': 'jinja file' }, { chat_template: 'tokenizer config' });
    assert.equal(tokenizer.applyChatTemplate([{ role: 'user', content: 'x' }]), 'jinja file');
  });

  it('falls back to tokenizer_config, and picks its default named template', async () => {
    const tokenizer = await withTemplateFiles('named', {}, {
      chat_template: [{ name: 'tool_use', template: 'tools' }, { name: 'default', template: 'default one' }],
    });
    assert.equal(tokenizer.applyChatTemplate([{ role: 'user', content: 'x' }]), 'default one');
  });

  it('reads chat_template.json and processor_config.json', async () => {
    const fromJson = await withTemplateFiles('json', { 'chat_template.json': { chat_template: 'from json' } });
    assert.equal(fromJson.applyChatTemplate([{ role: 'user', content: 'x' }]), 'from json');
    const fromProcessor = await withTemplateFiles('processor', { 'processor_config.json': { chat_template: 'from processor', image_seq_len: 64 } });
    assert.equal(fromProcessor.applyChatTemplate([{ role: 'user', content: 'x' }]), 'from processor');
  });

  it('renders a LLaVA-OneVision style ChatML template', async () => {
    const chatml = [
      '{% for message in messages %}<|im_start|>{{ message.role }}\n',
      '{% if message.content is string %}{{ message.content }}{% else %}',
      "{% for item in message.content %}{% if item.type == 'image' %}<image>\n{% elif item.type == 'text' %}{{ item.text }}{% endif %}{% endfor %}",
      '{% endif %}<|im_end|>\n{% endfor %}',
      '{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}',
    ].join('');
    const tokenizer = await withTemplateFiles('chatml', {}, { chat_template: chatml });
    assert.equal(
      tokenizer.applyChatTemplate([
        { role: 'system', content: 'You are helpful.' },
        { role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'What color?' }] },
      ]),
      '<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n<image>\nWhat color?<|im_end|>\n<|im_start|>assistant\n',
    );
    assert.equal(
      tokenizer.applyChatTemplate([{ role: 'user', content: 'hi' }], { addGenerationPrompt: false }),
      '<|im_start|>user\nhi<|im_end|>\n',
    );
  });

  it('reports a broken template with its file', async () => {
    const tokenizer = await withTemplateFiles('bad-template', { 'chat_template.jinja': '{% for %}' });
    assert.throws(
      () => tokenizer.applyChatTemplate([{ role: 'user', content: 'x' }]),
      (error: unknown) => error instanceof VigilError && error.code === 'BAD_CONFIG' && /chat_template\.jinja/.test(error.message),
    );
  });
});

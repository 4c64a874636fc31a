/**
 * Which chat template a model folder uses when it holds several, in the order a Hugging Face
 * processor reads them (transformers' ProcessorMixin.get_processor_dict): chat_template.json,
 * then chat_template.jinja, then processor_config.json's key; the tokenizer's own
 * tokenizer_config.json template only when the folder has no processor template. LLaVA-OneVision
 * folders can hold Qwen2's text-only template in tokenizer_config.json and the image-aware one in
 * chat_template.json: the image-aware one must win.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type ChatMessage, VlmTokenizer } from '../../src/model/tokenizer.js';

const TINY_TOKENIZER = { model: { type: 'BPE', vocab: { a: 0, b: 1, ab: 2 }, merges: [['a', 'b']] } };
const USER_X: ChatMessage[] = [{ role: 'user', content: 'x' }];

/** Qwen2's text-only ChatML template (as LLaVA-OV's tokenizer_config.json may carry): it drops non-text items. */
const QWEN2_TEXT_ONLY = [
  '{% for message in messages %}<|im_start|>{{ message.role }}\n',
  '{% if message.content is string %}{{ message.content }}{% else %}',
  "{% for item in message.content %}{% if item.type == 'text' %}{{ item.text }}{% endif %}{% endfor %}",
  '{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}',
].join('');

/** LLaVA-OneVision's processor template: images become `<image>` placeholders before the text. */
const LLAVA_OV_PROCESSOR = [
  '{% for message in messages %}<|im_start|>{{ message.role }}\n',
  '{% if message.content is string %}{{ message.content }}{% else %}',
  "{% for item in message.content %}{% if item.type == 'image' %}<image>\n{% elif item.type == 'video' %}<video>\n{% endif %}{% endfor %}",
  "{% for item in message.content %}{% if item.type == 'text' %}{{ item.text }}{% endif %}{% endfor %}",
  '{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}',
].join('');

let root: string;
let count = 0;

function folder(files: Record<string, unknown>, tokenizerTemplate?: unknown): string {
  const dir = path.join(root, `m${count++}`);
  fs.mkdirSync(dir, { recursive: true });
  const all: Record<string, unknown> = {
    'tokenizer.json': TINY_TOKENIZER,
    'tokenizer_config.json': tokenizerTemplate === undefined ? {} : { chat_template: tokenizerTemplate },
    ...files,
  };
  for (const [name, content] of Object.entries(all)) {
    fs.writeFileSync(path.join(dir, name), typeof content === 'string' ? content : JSON.stringify(content));
  }
  return dir;
}

async function rendered(dir: string, messages: ChatMessage[] = USER_X): Promise<string> {
  return (await VlmTokenizer.load(dir)).applyChatTemplate(messages);
}

describe('chat template precedence (processor first, tokenizer_config last)', () => {
  before(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-template-order-'));
  });
  after(() => fs.rmSync(root, { recursive: true, force: true }));

  it('takes each source in turn as the ones before it are removed', async () => {
    const all = {
      'chat_template.json': { chat_template: 'legacy json' },
      'chat_template.jinja': 'jinja',
      'processor_config.json': { chat_template: 'processor config', num_image_tokens: 729 },
    };
    assert.equal(await rendered(folder(all, 'tokenizer config')), 'legacy json');
    const { 'chat_template.json': _json, ...noJson } = all;
    assert.equal(await rendered(folder(noJson, 'tokenizer config')), 'jinja');
    const { 'chat_template.jinja': _jinja, ...noJinja } = noJson;
    assert.equal(await rendered(folder(noJinja, 'tokenizer config')), 'processor config');
    assert.equal(await rendered(folder({ 'processor_config.json': { num_image_tokens: 729 } }, 'tokenizer config')), 'tokenizer config');
  });

  it('skips processor files that carry no template (chat_template null or absent)', async () => {
    const dir = folder({ 'chat_template.json': { chat_template: null }, 'processor_config.json': { image_seq_len: 64 } }, 'tokenizer config');
    assert.equal(await rendered(dir), 'tokenizer config');
  });

  it("LLaVA-OneVision: chat_template.json's image-aware template wins over Qwen2's text-only tokenizer template", async () => {
    const dir = folder({ 'chat_template.json': { chat_template: LLAVA_OV_PROCESSOR } }, QWEN2_TEXT_ONLY);
    const question: ChatMessage[] = [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'What color?' }] }];
    assert.equal(await rendered(dir, question), '<|im_start|>user\n<image>\nWhat color?<|im_end|>\n<|im_start|>assistant\n');
    // The text-only template alone would lose the image placeholder: the order matters.
    assert.equal(await rendered(folder({}, QWEN2_TEXT_ONLY), question), '<|im_start|>user\nWhat color?<|im_end|>\n<|im_start|>assistant\n');
  });
});

/**
 * The model-family descriptors (src/model/families/) and the config-only support check: every
 * family's rules in one place, and every reason a config is not supported.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { streamPromptFormat } from '../../src/engine/streamPromptFormat.js';
import { familyForModelType, MODEL_FAMILIES, modelFamily } from '../../src/model/families/index.js';
import { assessConfigSupport, ropeSetting } from '../../src/model/families/support.js';
import { expandLlavaOnevisionPrompt, expandSmolVlmPrompt, smolVlmFramePrompt } from '../../src/model/promptExpansion.js';

const text = { hidden_size: 64, num_attention_heads: 4, num_hidden_layers: 2, vocab_size: 100 };

describe('model families', () => {
  it('maps model_type to a family and holds its turn end, RoPE defaults and rules', () => {
    assert.equal(familyForModelType('smolvlm')?.id, 'idefics3');
    assert.equal(familyForModelType('idefics3')?.id, 'idefics3');
    assert.equal(familyForModelType('llava_onevision')?.id, 'llava_onevision');
    assert.equal(familyForModelType('qwen2_vl'), undefined);
    assert.equal(modelFamily('idefics3').turnEndToken, '<end_of_utterance>');
    assert.equal(modelFamily('llava_onevision').turnEndToken, '<|im_end|>');
    for (const f of MODEL_FAMILIES) assert.deepEqual([f.rope.defaultTheta, f.rope.defaultPartialRotaryFactor], [10000, 1]);
    assert.deepEqual(MODEL_FAMILIES.map((f) => [f.streamFrames.kind, f.preprocessing.alpha, f.preprocessing.defaultResample]), [
      ['image-block', 'flatten-white', 1],
      ['pooled-2x', 'drop', 3],
    ]);
  });

  it('expands image prompts as the promptExpansion functions do', () => {
    const templated = '<|im_start|>User:<image>What?<end_of_utterance>\nAssistant:';
    let asked = 0;
    const perTile = () => (asked++, 3);
    assert.equal(modelFamily('idefics3').expandImagePrompt(templated, { rows: 1, cols: 2, featureRows: 9 }, perTile), expandSmolVlmPrompt(templated, [{ rows: 1, cols: 2 }], 3));
    assert.equal(asked, 1);
    // LLaVA-OV counts the encoder's rows and never asks for tokens per image (it may be unknowable).
    assert.equal(
      modelFamily('llava_onevision').expandImagePrompt(templated, { rows: 0, cols: 0, featureRows: 5 }, () => assert.fail('asked')),
      expandLlavaOnevisionPrompt(templated, [5]),
    );
  });

  it('stream prompt formats are the families\' (unchanged by the move)', () => {
    const smol = streamPromptFormat('idefics3', 64);
    assert.equal(smol.prefix, '<|im_start|>User: You are provided the following series of frames from a video.\n');
    assert.equal(smol.frame(6065), smolVlmFramePrompt(65, 64));
    assert.equal(smol.question('Q?'), '\n\nQ?<end_of_utterance>\nAssistant:');
    const llava = streamPromptFormat('llava_onevision', 196);
    assert.equal(llava.prefix, '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n');
    assert.equal(llava.frame(3), '<image>'.repeat(196));
    assert.equal(llava.question('Q?'), '\nQ?<|im_end|>\n<|im_start|>assistant\n');
  });
});

describe('assessConfigSupport', () => {
  it('accepts the supported families as exported (Qwen2 sliding_window with use_sliding_window false, all-full layer_types)', () => {
    assert.deepEqual(assessConfigSupport({ model_type: 'smolvlm', text_config: { ...text, rope_theta: 100000, rope_scaling: null } }).reasons, []);
    const qwen2 = { ...text, sliding_window: 32768, use_sliding_window: false, max_window_layers: 24, layer_types: ['full_attention', 'full_attention'] };
    assert.deepEqual(assessConfigSupport({ model_type: 'llava_onevision', text_config: qwen2 }), {
      modelType: 'llava_onevision',
      family: 'llava_onevision',
      supported: true,
      reasons: [],
    });
  });

  it('names each reason: unknown model_type, M-RoPE, per-layer-type RoPE, RoPE scaling, sliding-window layers', () => {
    const unknown = assessConfigSupport({ model_type: 'whisper' });
    assert.equal(unknown.supported, false);
    assert.match(unknown.reasons[0]!, /model_type 'whisper' is not a family Vigil implements \(supported: idefics3, smolvlm, llava_onevision\)/);
    const qwen = assessConfigSupport({ model_type: 'qwen2_vl', rope_scaling: { type: 'mrope', mrope_section: [16, 24, 24] }, text_config: text });
    assert.equal(qwen.reasons.length, 2);
    assert.match(qwen.reasons[0]!, /Qwen2-VL uses M-RoPE/);
    assert.match(qwen.reasons[1]!, /^M-RoPE: config\.json rope_scaling mrope_section \[16, 24, 24\] rotates by 3-row position_ids/);
    const gemma = assessConfigSupport({
      model_type: 'gemma3',
      text_config: { ...text, rope_theta: 1e6, rope_local_base_freq: 10000, sliding_window: 512, rope_scaling: { rope_type: 'linear', factor: 8 }, layer_types: ['sliding_attention', 'full_attention'] },
    });
    assert.deepEqual(
      gemma.reasons.map((r) => r.slice(0, r.indexOf(':'))),
      ['model_type \'gemma3\' is not a family Vigil implements (supported', 'RoPE scaling', 'per-layer-type RoPE', 'sliding-window layers'],
    );
    assert.match(gemma.reasons[2]!, /rope_local_base_freq 10000 for local \(sliding\) layers, rope_theta 1000000 for global ones/);
    assert.match(gemma.reasons[3]!, /1 of 2 text_config layer_types are 'sliding_attention' \(window 512\)/);
    // A supported model_type with a config Vigil cannot stream keeps its family and gets the reasons.
    const windowed = assessConfigSupport({ model_type: 'smolvlm', text_config: { ...text, sliding_window: 4096 } });
    assert.deepEqual([windowed.family, windowed.supported], ['idefics3', false]);
    assert.match(windowed.reasons[0]!, /^sliding-window attention: text_config sliding_window 4096/);
    const perType = assessConfigSupport({
      model_type: 'llava_onevision',
      text_config: { ...text, rope_parameters: { full_attention: { rope_theta: 1e6 }, sliding_attention: { rope_theta: 1e4 } } },
    });
    assert.match(perType.reasons[0]!, /^per-layer-type RoPE: text_config rope_parameters has parameters per layer type \(full_attention theta 1000000, sliding_attention theta 10000\)/);
  });
});

describe('ropeSetting', () => {
  it('reads rope_theta / partial_rotary_factor, else from rope_parameters (transformers 5)', () => {
    assert.equal(ropeSetting({ rope_theta: 1e5, rope_parameters: { rope_theta: 1 } }, 'rope_theta'), 1e5);
    assert.equal(ropeSetting({ rope_parameters: { rope_type: 'default', rope_theta: 1e6, partial_rotary_factor: 0.5 } }, 'rope_theta'), 1e6);
    assert.equal(ropeSetting({ rope_parameters: { rope_type: 'default', partial_rotary_factor: 0.5 } }, 'partial_rotary_factor'), 0.5);
    assert.equal(ropeSetting({ rope_parameters: { full_attention: { rope_theta: 1e6 } } }, 'rope_theta'), undefined);
    assert.equal(ropeSetting({}, 'rope_theta'), undefined);
    // A default-type rope_parameters is no reason to refuse a config.
    assert.deepEqual(assessConfigSupport({ model_type: 'smolvlm', text_config: { rope_parameters: { rope_type: 'default', rope_theta: 1e5 } } }).reasons, []);
  });
});

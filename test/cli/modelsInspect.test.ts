/**
 * `vigil models inspect` on any folder: every ONNX file's I/O, attention op, RoPE placement, KV dtype
 * and per-layer query-tap plan read from the protobuf (no onnxruntime), and, for folders Vigil does
 * not support, every reason why (config and graph facts). Probe models plus temp folders that reuse a
 * probe's graphs (symlinked) under an altered config.json.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isVigilError } from '../../common/errors.js';
import { loadModelConfig } from '../../src/model/modelConfig.js';
import { classifyGraphFile, inspectModelFolder, type ModelInspection } from '../../src/model/modelInspection.js';
import { OnnxModelWriter } from '../../src/model/onnx/modelWriter.js';
import { probeModelDir } from '../helpers/probeModels.js';
import { runVigil } from '../helpers/runVigil.js';

type Json = Record<string, unknown>;

describe('models inspect', () => {
  let scratch: string;
  let gqaDir: string;
  let tinyDir: string;
  before(() => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-inspect-'));
    gqaDir = probeModelDir('probe-random-tiny-gqa');
    tinyDir = probeModelDir('probe-random-tiny');
  });
  after(() => fs.rmSync(scratch, { recursive: true, force: true }));

  /** A folder with `base`'s files (onnx/ files symlinked) and config.json changed by `edit`. */
  function alteredCopy(name: string, base: string, edit: (config: Json) => void): string {
    const dir = path.join(scratch, name);
    fs.mkdirSync(path.join(dir, 'onnx'), { recursive: true });
    for (const f of fs.readdirSync(base)) if (f !== 'onnx') fs.copyFileSync(path.join(base, f), path.join(dir, f));
    for (const f of fs.readdirSync(path.join(base, 'onnx'))) fs.symlinkSync(path.join(base, 'onnx', f), path.join(dir, 'onnx', f));
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Json;
    edit(config);
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
    return dir;
  }

  const file = (r: ModelInspection, name: string) => r.files.find((f) => f.file === path.join('onnx', name))!;

  it('names graphs and dtypes from file names', () => {
    assert.deepEqual(classifyGraphFile('decoder_model_merged_q4f16.onnx'), { graph: 'decoder_model_merged', dtype: 'q4f16' });
    assert.deepEqual(classifyGraphFile('vision_encoder.onnx'), { graph: 'vision_encoder', dtype: 'fp32' });
    assert.deepEqual(classifyGraphFile('embed_tokens_quantized.onnx'), { graph: 'embed_tokens', dtype: 'q8' });
    assert.deepEqual(classifyGraphFile('decoder_model_merged_q2.onnx'), { graph: 'decoder_model_merged', dtype: null });
    assert.deepEqual(classifyGraphFile('encoder_model.onnx'), { graph: null, dtype: null });
  });

  it('a model-builder-style probe: every dtype file, GQA with RoPE inside, float16 KV and taps for q4f16', () => {
    const r = inspectModelFolder(gqaDir);
    assert.deepEqual([r.family, r.supported, r.reasons], ['idefics3', true, []]);
    assert.equal(r.files.length, 9);
    assert.deepEqual(r.files.map((f) => f.dtype).sort(), ['fp32', 'fp32', 'fp32', 'q4', 'q4', 'q4', 'q4f16', 'q4f16', 'q4f16']);
    const embed = file(r, 'embed_tokens_q4f16.onnx');
    assert.deepEqual(embed.inputs, [{ name: 'input_ids', type: 'int64', dims: ['batch_size', 'sequence_length'] }]);
    assert.deepEqual(embed.outputs, [{ name: 'inputs_embeds', type: 'float32', dims: ['batch_size', 'sequence_length', 64] }]);
    assert.equal(embed.decoder, undefined);
    for (const [name, kv, tap] of [
      ['decoder_model_merged.onnx', 'float32', /^\/model\/layers\.\d\/attn\/q_proj\/MatMul_output_0$/],
      ['decoder_model_merged_q4.onnx', 'float32', /^\/model\/layers\.\d\/attn\/q_proj\/MatMul_Quant_output_0$/],
      ['decoder_model_merged_q4f16.onnx', 'float16', /^\/model\/layers\.\d\/attn\/q_proj\/MatMul_Quant_output_0$/],
    ] as const) {
      const f = file(r, name);
      const d = f.decoder!;
      assert.ok(f.inputs.some((i) => i.name === 'num_logits_to_keep'), name);
      assert.deepEqual([d.layers, d.attentionOps, d.rotary, d.kvType, d.positionIds, d.queryTaps.complete], [2, ['GroupQueryAttention'], 'inside', kv, null, true], name);
      assert.equal(f.outputs.find((o) => o.name === 'logits')!.type, kv, name);
      for (const l of d.queryTaps.layers) {
        assert.equal(l.status, 'found');
        assert.match(l.tensorName!, tap);
        assert.deepEqual([l.dtype, l.attentionOp, l.rotary, l.exposed], [kv, 'GroupQueryAttention', 'inside', false], name);
      }
    }
  });

  it('an export with position_ids and RoPE outside the attention, taps already outputs', () => {
    const d = file(inspectModelFolder(tinyDir, { dtypes: ['fp32'] }), 'decoder_model_merged.onnx').decoder!;
    assert.deepEqual([d.rotary, d.positionIds?.dims, d.queryTaps.layers.map((l) => [l.rotary, l.exposed])], [
      'outside',
      ['batch_size', 'sequence_length'],
      [['rotate_half', true], ['rotate_half', true]],
    ]);
  });

  it('an unsupported family still gets its graphs and taps, with every reason (M-RoPE, unreadable file)', () => {
    const dir = alteredCopy('qwen', gqaDir, (c) => {
      c.model_type = 'qwen2_vl';
      c.rope_scaling = { type: 'mrope', mrope_section: [16, 24, 24] };
    });
    fs.writeFileSync(path.join(dir, 'onnx', 'decoder_model_merged_fp16.onnx'), 'not a protobuf at all \xff\xff\xff');
    const r = inspectModelFolder(dir);
    assert.deepEqual([r.family, r.supported], [null, false]);
    assert.match(r.reasons[0]!, /Qwen2-VL uses M-RoPE/);
    assert.match(r.reasons[1]!, /^M-RoPE: config\.json rope_scaling mrope_section \[16, 24, 24\]/);
    assert.equal(file(r, 'decoder_model_merged_q4.onnx').decoder!.queryTaps.complete, true);
    const broken = file(r, 'decoder_model_merged_fp16.onnx');
    assert.match(broken.error!, /not a readable ONNX model/);
    assert.equal(broken.dtype, 'fp16');
  });

  it('a decoder with 3-row position_ids is M-RoPE whatever the config says; missing graphs are named', () => {
    const dir = path.join(scratch, 'mrope-graph');
    fs.mkdirSync(path.join(dir, 'onnx'), { recursive: true });
    fs.copyFileSync(path.join(tinyDir, 'config.json'), path.join(dir, 'config.json'));
    const writer = new OnnxModelWriter({ path: path.join(dir, 'onnx', 'decoder_model_merged.onnx'), graphName: 'mrope', opset: 17 });
    const g = writer.graph;
    const x = g.input('inputs_embeds', 'float32', ['batch_size', 'sequence_length', 4]);
    g.input('position_ids', 'int64', [3, 'batch_size', 'sequence_length']);
    const past = g.input('past_key_values.0.key', 'float32', ['batch_size', 1, 'past_sequence_length', 4]);
    g.output(g.op('Identity', [x]), 'logits', 'float32', ['batch_size', 'sequence_length', 4]);
    g.output(g.op('Identity', [past]), 'present.0.key', 'float32', ['batch_size', 1, 'past_sequence_length', 4]);
    writer.save();
    const r = inspectModelFolder(dir);
    assert.equal(r.family, 'idefics3');
    assert.deepEqual(r.reasons.map((x) => x.slice(0, 30)), [
      'no onnx/vision_encoder*.onnx (',
      'no onnx/embed_tokens*.onnx (Vi',
      'M-RoPE: onnx/decoder_model_mer',
    ]);
    assert.match(r.reasons[2]!, /takes 3-row position_ids \[3, batch_size, sequence_length\]/);
    const d = r.files[0]!.decoder!;
    assert.deepEqual([d.queryTaps.complete, d.attentionOps, d.rotary], [false, [], 'unknown']);
    assert.match(d.queryTaps.layers[0]!.reason, /no attention node consumes past_key_values\.0\.key/);
  });

  it('a supported model_type with sliding-window layers: inspect says why, loading refuses it', () => {
    const dir = alteredCopy('windowed', gqaDir, (c) => {
      const text = c.text_config as Json;
      text.sliding_window = 512;
      text.layer_types = ['sliding_attention', 'full_attention'];
    });
    const r = inspectModelFolder(dir, { dtypes: ['q4'] });
    assert.deepEqual([r.family, r.supported, r.files.length], ['idefics3', false, 3]);
    assert.match(r.reasons[0]!, /^sliding-window layers: 1 of 2 text_config layer_types are 'sliding_attention' \(window 512\)/);
    assert.throws(() => loadModelConfig(dir), (e: unknown) => isVigilError(e) && e.code === 'UNSUPPORTED_MODEL' && /sliding-window layers/.test(e.message));
  });

  it('CLI: an unsupported folder is reported (exit 0) with its reasons, graphs and tap plan, never loaded', async () => {
    const dir = alteredCopy('gemma', gqaDir, (c) => {
      c.model_type = 'gemma3';
      Object.assign(c.text_config as Json, { rope_local_base_freq: 10000, sliding_window: 512, layer_types: ['sliding_attention', 'full_attention'] });
    });
    const run = await runVigil(['models', 'inspect', dir, '--dtype', 'q4f16']);
    assert.equal(run.code, 0, run.stderr);
    for (const needle of [
      "model_type gemma3: no Vigil family; NOT SUPPORTED",
      "model_type 'gemma3' is not a family Vigil implements",
      'per-layer-type RoPE: text_config rope_local_base_freq 10000',
      "sliding-window layers: 1 of 2 text_config layer_types are 'sliding_attention' (window 512)",
      'onnx/decoder_model_merged_q4f16.onnx (decoder_model_merged, q4f16',
      'in past_key_values.N.key float16 [batch_size, 2, past_sequence_length, 16] x2',
      'attention GroupQueryAttention; rotary inside (2 GroupQueryAttention node(s) with do_rotary=1); KV float16; position_ids none',
      'layer 1: found /model/layers.1/attn/q_proj/MatMul_Quant_output_0 float16 (GroupQueryAttention, rotary inside)',
      'not loaded: Vigil does not support this folder',
    ]) {
      assert.ok(run.stdout.includes(needle), `missing '${needle}' in:\n${run.stdout}`);
    }
    assert.ok(!run.stdout.includes('decoder_model_merged_q4.onnx'), '--dtype limits the files');
  });

  it('CLI --json on a supported probe: static report and the loaded facts together', async () => {
    const run = await runVigil(['models', 'inspect', tinyDir, '--json'], { VIGIL_CACHE_DIR: path.join(scratch, 'cache') });
    assert.equal(run.code, 0, run.stderr);
    const info = JSON.parse(run.stdout) as ModelInspection & { kvType: string; queryTapState: string; tokensPerFrame: number; loadedFiles: string[] };
    assert.deepEqual([info.family, info.supported, info.kvType, info.queryTapState, info.tokensPerFrame], ['idefics3', true, 'float32', 'exposed', 4]);
    // The graph already outputs its query taps; the copy loaded adds each layer's new key/value rows.
    assert.deepEqual(info.loadedFiles.slice(0, 2), ['onnx/vision_encoder.onnx', 'onnx/embed_tokens.onnx']);
    assert.match(info.loadedFiles[2]!, new RegExp(`^${path.join(scratch, 'cache', 'query-taps')}/[0-9a-f]{20}/decoder_model_merged\\.onnx$`));
    assert.equal((info as unknown as { decode: string }).decode, 'in place');
    assert.equal((info as unknown as { decodeAttention: string }).decodeAttention, 'split');
    assert.equal(info.files.find((f) => f.graph === 'decoder_model_merged')!.decoder!.queryTaps.complete, true);
  });
});

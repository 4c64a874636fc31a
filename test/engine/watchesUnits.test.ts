/**
 * The watch engine's parts without a model: the score kernel against a float64 reference, the
 * calibration (steady noise asks for no check, a jump in and out asks for two), triggers, the
 * watch spec, the store (atomic list, appended alerts, a torn last line), and the engine with a fake
 * host (cooldown; a failing check or broken frame counts an error and never throws into ingest).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { packQueries, watchScores } from '../../kernels/watchScores.js';
import { dotRow } from '../../kernels/similarity.js';
import { WatchCalibration } from '../../src/engine/watches/calibration.js';
import { conditionHolds, isAlertEdge, normalizeAnswer } from '../../src/engine/watches/trigger.js';
import { parseWatchSpec } from '../../src/engine/watches/parseWatchSpec.js';
import { WatchStore } from '../../src/engine/watches/watchStore.js';
import { WatchEngine, type WatchHost } from '../../src/engine/watches/watchEngine.js';
import type { Alert } from '../../src/engine/watches/types.js';
import type { FrameChunk } from '../../memory/frameChunk.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}
const vec = (n: number, r: () => number) => Float32Array.from({ length: n }, r);

describe('watchScores kernel', () => {
  it('equals dotRow per watch and layer exactly, and a float64 reference to 1e-12', () => {
    const r = rng(7);
    const L = 5;
    const dim = 37;
    const queries = Array.from({ length: 3 }, () => Array.from({ length: L }, () => vec(dim, r)));
    const reps = Array.from({ length: L }, () => vec(dim, r));
    const out = watchScores(packQueries(queries, L, dim), 3, reps, new Float64Array(3 * L));
    for (let w = 0; w < 3; w++) {
      for (let l = 0; l < L; l++) {
        assert.equal(out[w * L + l], dotRow(queries[w]![l]!, 0, dim, reps[l]!));
        let ref = 0;
        for (let i = 0; i < dim; i++) ref += queries[w]![l]![i]! * reps[l]![i]!;
        assert.ok(Math.abs(out[w * L + l]! - ref) < 1e-12 * (1 + Math.abs(ref)));
      }
    }
  });
  it('refuses mismatched shapes', () => {
    assert.throws(() => packQueries([[new Float32Array(3)]], 1, 4), RangeError);
    assert.throws(() => watchScores([new Float32Array(4)], 1, [], new Float64Array(1)), RangeError);
  });
});

describe('watch calibration', () => {
  it('first frame asks; steady noise does not; a jump in and a jump out do', () => {
    const r = rng(3);
    const cal = new WatchCalibration(2, 8);
    const frame = (level: number) => Float64Array.from([level + 0.01 * r(), 5 + 0.01 * r()]);
    const first = cal.observe(frame(1));
    assert.equal(first.change, Number.POSITIVE_INFINITY);
    assert.ok(first.check);
    cal.markChecked();
    let asked = 0;
    for (let i = 0; i < 40; i++) if (cal.observe(frame(1)).check) asked++;
    assert.equal(asked, 0, 'steady noise');
    const jump = cal.observe(frame(3));
    assert.ok(jump.check && jump.change > 50, JSON.stringify(jump));
    cal.markChecked();
    assert.equal(cal.observe(frame(3)).check, false, 'the new level, once checked, is steady');
    assert.equal(cal.observe(frame(1)).check, true, 'and leaving it is a change');
  });
  it('a perfectly constant score (exact zeros) is steady; any real move is a change', () => {
    const cal = new WatchCalibration(1);
    cal.observe(Float64Array.of(0));
    cal.markChecked();
    for (let i = 0; i < 10; i++) assert.equal(cal.observe(Float64Array.of(0)).check, false);
    assert.equal(cal.observe(Float64Array.of(0.5)).check, true);
  });
});

describe('watch triggers and specs', () => {
  it('yes, answer-matches (case-insensitive), answer-changes (never on the first answer)', () => {
    assert.equal(normalizeAnswer('  Yes.  '), 'yes');
    assert.equal(conditionHolds({ trigger: 'yes' }, 'Yes, there is.', null), true);
    assert.equal(conditionHolds({ trigger: 'yes' }, 'yesterday', null), false);
    assert.equal(conditionHolds({ trigger: 'yes' }, 'No', null), false);
    assert.equal(conditionHolds({ trigger: 'answer-matches', pattern: 'green' }, ' Green', null), true);
    assert.equal(conditionHolds({ trigger: 'answer-matches', pattern: '^green$' }, 'unknown', null), false);
    assert.equal(conditionHolds({ trigger: 'answer-changes' }, 'unknown', null), false);
    assert.equal(conditionHolds({ trigger: 'answer-changes' }, 'Unknown.', 'unknown'), false);
    assert.equal(conditionHolds({ trigger: 'answer-changes' }, 'green', 'unknown'), true);
    assert.equal(isAlertEdge({ trigger: 'yes' }, true, true), false);
    assert.equal(isAlertEdge({ trigger: 'yes' }, true, false), true);
    assert.equal(isAlertEdge({ trigger: 'answer-changes' }, true, true), true);
  });
  it('parseWatchSpec fills defaults and refuses non-objects', () => {
    const w = parseWatchSpec({ question: 'Is it red?', trigger: 'yes' }, 5);
    assert.match(w.id, /^w_[0-9a-f]{12}$/);
    assert.deepEqual({ ...w, id: '' }, { id: '', question: 'Is it red?', trigger: 'yes', cooldownSec: 60, maxIntervalSec: 30, createdAt: 5 });
    for (const bad of [null, [], 'x', { question: 'q', trigger: 'answer-matches', pattern: 'x'.repeat(201) }]) {
      assert.throws(() => parseWatchSpec(bad), (e: Error & { code?: string }) => e.code === 'BAD_INPUT');
    }
  });
});

describe('watch store', () => {
  it('writes the list atomically, appends alerts, skips a torn last line; a damaged list is set aside', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-watchstore-'));
    try {
      const store = new WatchStore(dir);
      assert.deepEqual(store.readWatches(), []);
      assert.deepEqual(store.readAlerts(), []);
      const w = parseWatchSpec({ question: 'q', trigger: 'yes' });
      store.writeWatches([w]);
      assert.deepEqual(new WatchStore(dir).readWatches(), [w]);
      assert.ok(!fs.existsSync(path.join(dir, 'watches', 'watches.json.tmp')));
      const alert = { id: 'a_1', watchId: w.id, stream: 's', t: 1, wallTime: 2, answer: 'yes', evidence: [], checkMs: 3, previousAnswer: null } satisfies Alert;
      store.appendAlert(alert);
      fs.appendFileSync(path.join(dir, 'watches', 'alerts.ndjson'), '{"id":"a_2","wat');
      assert.deepEqual(new WatchStore(dir).readAlerts(), [alert]);
      fs.writeFileSync(path.join(dir, 'watches', 'watches.json'), '{"version":1,"wat');
      assert.throws(() => new WatchStore(dir).readWatches(), (e: Error & { code?: string }) => e.code === 'STORE_CORRUPT');
      // The engine opens anyway: the damaged list is set aside with a warning, the alerts are kept.
      const warnings: string[] = [];
      const onWarning = (w: Error) => warnings.push(w.message);
      process.on('warning', onWarning);
      const host: WatchHost = { stream: 's', numLayers: 1, dim: 1, check: () => Promise.reject(new Error('unused')), contextChunkIds: () => new Set() };
      const engine = new WatchEngine(host, { store: new WatchStore(dir) });
      await new Promise((resolve) => setImmediate(resolve));
      process.off('warning', onWarning);
      assert.deepEqual(engine.list(), []);
      assert.equal(engine.alerts().length, 1);
      assert.ok(fs.readdirSync(path.join(dir, 'watches')).some((f) => f.startsWith('watches.json.damaged-')));
      assert.match(warnings.join('\n'), /watches not loaded/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('watch engine with a fake host', () => {
  const L = 2;
  const dim = 4;
  const chunk = (id: number, level: number): FrameChunk => ({
    chunkId: id,
    tStart: id,
    tEnd: id,
    wallTime: 1000 * id,
    tokenCount: 1,
    numLayers: L,
    numKvHeads: 1,
    headDim: dim,
    keys: [],
    values: [],
    representatives: [Float32Array.of(level, 0, 0, 0), Float32Array.of(0, 0, 0, 0)],
  });
  function host(answer: (calls: number) => string | Error): WatchHost & { calls: number } {
    const h = {
      stream: 'cam',
      numLayers: L,
      dim,
      calls: 0,
      check: (_q: string, started: () => void) => {
        started();
        const a = answer(++h.calls);
        return a instanceof Error ? Promise.reject(a) : Promise.resolve({ answer: a, checkMs: 1 });
      },
      // Every frame stays in context (no left-window re-checks here).
      contextChunkIds: () => new Set(Array.from({ length: 100 }, (_, i) => i)),
    };
    return h;
  }
  const query = [Float32Array.of(1, 0, 0, 0), Float32Array.of(0, 0, 0, 0)];

  it('a yes watch alerts on the rising edge, the cooldown holds back the next one', async () => {
    const h = host(() => 'yes');
    const engine = new WatchEngine(h);
    const w = parseWatchSpec({ question: 'q', trigger: 'yes', cooldownSec: 20 });
    engine.activate(w, query, false);
    // 0: first check (yes: alert); 1-9 steady (past the calibration's warmup); 10: the level drops (check: no);
    // 13: it rises again (check: yes, inside the 20 s cooldown: held back).
    const levels = [...Array<number>(10).fill(1), 0, 0, 0, 1];
    const answers = ['yes', 'no', 'yes'];
    h.check = (_q, started) => {
      started();
      return Promise.resolve({ answer: answers[h.calls++]!, checkMs: 1 });
    };
    for (const [i, level] of levels.entries()) {
      engine.onFrame(chunk(i, level));
      await engine.idle();
    }
    assert.deepEqual(engine.alerts().map((a) => a.t), [0]);
    const stats = engine.stats()[w.id]!;
    assert.equal(stats.checks, 3);
    assert.equal(stats.suppressed, 1);
  });

  it('at most maxQueuedChecks checks wait at once; a watch that found the queue full asks again at the next frame', async () => {
    const waiting: Array<() => void> = [];
    const h: WatchHost = {
      stream: 'cam',
      numLayers: L,
      dim,
      check: (_q, started) =>
        new Promise((resolve) => {
          waiting.push(() => {
            started();
            resolve({ answer: 'no', checkMs: 1 });
          });
        }),
      contextChunkIds: () => new Set(Array.from({ length: 100 }, (_, i) => i)),
    };
    const engine = new WatchEngine(h, { maxQueuedChecks: 2 });
    const ids = [0, 1, 2, 3].map((i) => {
      const w = parseWatchSpec({ question: `q${i}`, trigger: 'yes' });
      engine.activate(w, query, false);
      return w.id;
    });
    const runWaiting = async () => {
      for (const run of waiting.splice(0)) run();
      await engine.idle();
    };
    engine.onFrame(chunk(0, 1));
    assert.equal(waiting.length, 2, 'two checks queued, two deferred');
    await runWaiting();
    engine.onFrame(chunk(1, 1));
    assert.equal(waiting.length, 2, 'the deferred two ask at the next frame');
    await runWaiting();
    const stats = engine.stats();
    assert.deepEqual(ids.map((id) => stats[id]!.checks), [1, 1, 1, 1]);
    assert.deepEqual(ids.map((id) => stats[id]!.deferred), [0, 0, 1, 1]);
    assert.deepEqual(ids.map((id) => stats[id]!.checksByReason.first), [1, 1, 1, 1]);
  });

  it('a failing check or a frame of the wrong shape counts an error and never throws', async () => {
    const h = host(() => new Error('model gone'));
    const engine = new WatchEngine(h);
    const w = parseWatchSpec({ question: 'q', trigger: 'yes' });
    engine.activate(w, query, false);
    engine.onFrame(chunk(0, 1));
    await engine.idle();
    assert.doesNotThrow(() => engine.onFrame({ ...chunk(1, 1), representatives: [] }));
    await engine.idle();
    const stats = engine.stats()[w.id]!;
    assert.equal(stats.errors, 2);
    assert.match(stats.lastError!, /representative layers/);
    assert.deepEqual(engine.alerts(), []);
  });
});

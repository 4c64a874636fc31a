import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isVigilError } from '../../common/errors.js';
import { DEFAULT_GATE, FrameGate, gatePhaseSec, gateSettings, type GateVerdict, type RgbImage } from '../../src/engine/frameGate.js';

const W = 128;
const H = 96;

/** A textured gray scene (fixed pattern), optionally with a square of another colour at (x, y). */
function scene(options: { shift?: number; square?: { x: number; y: number; size: number; rgb: [number, number, number] } } = {}): RgbImage {
  const data = new Uint8Array(W * H * 3);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const v = 100 + ((x * 13 + y * 7) % 40) + (options.shift ?? 0);
      const sq = options.square;
      const inside = sq && x >= sq.x && x < sq.x + sq.size && y >= sq.y && y < sq.y + sq.size;
      const p = (y * W + x) * 3;
      data[p] = inside ? sq.rgb[0] : v;
      data[p + 1] = inside ? sq.rgb[1] : v;
      data[p + 2] = inside ? sq.rgb[2] : v;
    }
  }
  return { data, width: W, height: H };
}

test('the gate encodes the first frame, turns away an unchanged one, and encodes a small change', () => {
  const gate = new FrameGate(DEFAULT_GATE);
  const first = gate.check(scene(), 0);
  assert.deepEqual(first, { encode: true, reason: 'first', changed: null });
  gate.accept(0);
  const same = gate.check(scene(), 1);
  assert.equal(same.encode, false);
  assert.equal(same.reason, 'unchanged');
  assert.equal(same.changed, 0);
  // A 12x12 object in a 128x96 frame (1.2% of it) is a change at the default threshold.
  const object = gate.check(scene({ square: { x: 40, y: 30, size: 12, rgb: [250, 20, 20] } }), 2);
  assert.equal(object.encode, true);
  assert.equal(object.reason, 'changed');
  assert.ok(object.changed! >= DEFAULT_GATE.threshold && object.changed! < 0.05, `changed ${object.changed}`);
});

test('the reference is the last ENCODED frame: a slow drift adds up until it is encoded', () => {
  const gate = new FrameGate({ threshold: 0.5, maxHoldSec: 1000 });
  gate.check(scene(), 0);
  gate.accept(0);
  const verdicts: boolean[] = [];
  // +4 luma levels per frame: each step is below the per-block delta (12), three steps are not.
  for (let i = 1; i <= 7; i++) {
    const verdict = gate.check(scene({ shift: 4 * i }), i);
    if (verdict.encode) gate.accept(i);
    verdicts.push(verdict.encode);
  }
  // Compared with the last SEEN frame, every step (4 levels) would have looked unchanged.
  assert.deepEqual(verdicts, [false, false, false, true, false, false, false]);
});

test('max hold: an unchanged frame is encoded once maxHoldSec passed since the last encoded one', () => {
  const gate = new FrameGate({ threshold: 0.01, maxHoldSec: 10 });
  gate.check(scene(), 100);
  gate.accept(100);
  assert.equal(gate.check(scene(), 109.5).encode, false);
  const held = gate.check(scene(), 110);
  assert.deepEqual([held.encode, held.reason], [true, 'max-hold']);
  gate.accept(110);
  assert.equal(gate.check(scene(), 115).encode, false);
});

/** Feeds frames at t = from..to (step 1 s) through the gate, accepting what it encodes; returns what was encoded. */
function run(gate: FrameGate, frameAt: (t: number) => RgbImage, from: number, to: number): Array<{ t: number; reason: GateVerdict['reason'] }> {
  const encoded: Array<{ t: number; reason: GateVerdict['reason'] }> = [];
  for (let t = from; t <= to; t++) {
    const verdict = gate.check(frameAt(t), t);
    if (!verdict.encode) continue;
    gate.accept(t);
    encoded.push({ t, reason: verdict.reason });
  }
  return encoded;
}

const STATIC = scene();
const CHANGED = [scene({ square: { x: 10, y: 10, size: 20, rgb: [250, 20, 20] } }), scene({ square: { x: 70, y: 50, size: 20, rgb: [20, 20, 250] } })];

test('max-hold phase: the same id always gets the same phase, different ids different ones, in [0, maxHoldSec)', () => {
  assert.equal(gatePhaseSec('cam1', 60), gatePhaseSec('cam1', 60));
  assert.equal(new FrameGate(DEFAULT_GATE, 'cam1').phaseSec, gatePhaseSec('cam1', DEFAULT_GATE.maxHoldSec));
  const ids = Array.from({ length: 200 }, (_, i) => `cam${i}`);
  const phases = ids.map((id) => gatePhaseSec(id, 60));
  assert.equal(new Set(phases).size, ids.length);
  assert.ok(phases.every((p) => p >= 0 && p < 60));
  // Ids one character apart land far apart (a plain FNV-1a would put cam1..cam9 within ~2 s).
  assert.ok(Math.abs(gatePhaseSec('cam1', 60) - gatePhaseSec('cam2', 60)) > 2);
  // Spread over the whole period: every sixth of it has some of the 200.
  for (let k = 0; k < 6; k++) assert.ok(phases.some((p) => p >= k * 10 && p < (k + 1) * 10), `no phase in [${k * 10}, ${k * 10 + 10})`);
  assert.equal(new FrameGate('off', 'cam1').phaseSec, 0);
  assert.equal(new FrameGate(DEFAULT_GATE).phaseSec, 0);
});

test('max-hold phase: no frame is held longer than maxHoldSec, whatever the id and the changes', () => {
  for (const maxHoldSec of [1, 7, 60]) {
    for (let i = 0; i < 12; i++) {
      const gate = new FrameGate({ threshold: 0.01, maxHoldSec }, `stream-${i}`);
      // Changes at pseudo-random seconds (a fixed LCG per stream), the scene static in between.
      let seed = 12345 + i;
      const changes = new Map<number, RgbImage>();
      for (let t = 0; t < 400; t++) {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        if (seed % 61 === 0) changes.set(t, CHANGED[t % 2]!);
      }
      const encoded = run(gate, (t) => changes.get(t) ?? STATIC, 0, 400);
      assert.equal(encoded[0]!.reason, 'first');
      for (let k = 1; k < encoded.length; k++) {
        assert.ok(encoded[k]!.t - encoded[k - 1]!.t <= maxHoldSec, `stream-${i}, maxHold ${maxHoldSec}: held ${encoded[k - 1]!.t} -> ${encoded[k]!.t}`);
      }
      assert.ok(400 - encoded.at(-1)!.t < maxHoldSec);
      assert.ok(encoded.some((e) => e.reason === 'max-hold'));
    }
  }
});

test('max-hold phase: cameras started together over a static scene force their encodes on distinct seconds', () => {
  const forced = new Map<number, string>();
  for (const id of ['cam1', 'cam2', 'cam3', 'cam4']) {
    const encoded = run(new FrameGate(DEFAULT_GATE, id), () => STATIC, 0, 600);
    const holds = encoded.filter((e) => e.reason === 'max-hold').map((e) => e.t);
    // Predicted from the id: the first at ceil(60 - phase) after the first frame, then every 60 s.
    const firstDue = Math.ceil(60 - gatePhaseSec(id, 60));
    assert.deepEqual(holds, Array.from({ length: Math.floor((600 - firstDue) / 60) + 1 }, (_, k) => firstDue + 60 * k), id);
    for (const t of holds) {
      assert.ok(!forced.has(t), `${id} and ${forced.get(t)} both forced an encode at ${t} s`);
      forced.set(t, id);
    }
  }
});

test('max-hold phase: only the hold after a first frame is shortened (after a change or a refresh it is maxHoldSec); an outage applies it again', () => {
  const gate = new FrameGate(DEFAULT_GATE, 'cam1');
  const firstDue = Math.ceil(60 - gate.phaseSec);
  assert.ok(firstDue < 60);
  const encoded = run(gate, (t) => (t === 100 ? CHANGED[0]! : STATIC), 0, 300);
  assert.deepEqual(
    encoded.map((e) => [e.t, e.reason]),
    [[0, 'first'], [firstDue, 'max-hold'], [100, 'changed'], [101, 'changed'], [161, 'max-hold'], [221, 'max-hold'], [281, 'max-hold']],
  );
  gate.forget();
  const again = run(gate, () => STATIC, 1000, 1100);
  assert.deepEqual(again.map((e) => [e.t, e.reason]), [[1000, 'first'], [1000 + firstDue, 'max-hold'], [1060 + firstDue, 'max-hold']].filter(([t]) => (t as number) <= 1100));
});

test('a frame encoded without a check leaves no reference (the next one is encoded); off encodes everything', () => {
  const gate = new FrameGate(DEFAULT_GATE);
  gate.check(scene(), 0);
  gate.accept(0);
  gate.accept(1);
  assert.equal(gate.check(scene(), 2).reason, 'first');
  const off = new FrameGate('off');
  for (let t = 0; t < 3; t++) {
    assert.deepEqual(off.check(scene(), t), { encode: true, reason: 'off', changed: null });
    off.accept(t);
  }
  assert.equal(off.enabled, false);
});

test('a frame smaller than the thumbnail is compared at its own size; a size change starts over', () => {
  const gate = new FrameGate(DEFAULT_GATE);
  const tiny = { data: new Uint8Array(8 * 6 * 3).fill(90), width: 8, height: 6 };
  gate.check(tiny, 0);
  gate.accept(0);
  assert.equal(gate.check(tiny, 1).encode, false);
  assert.equal(gate.check(scene(), 2).reason, 'first');
});

test('gateSettings: defaults, off, and bad values are BAD_INPUT naming the setting', () => {
  assert.deepEqual(gateSettings(undefined), DEFAULT_GATE);
  assert.equal(gateSettings('off'), 'off');
  assert.deepEqual(gateSettings({ threshold: 0.02 }), { threshold: 0.02, maxHoldSec: DEFAULT_GATE.maxHoldSec });
  assert.deepEqual(gateSettings({ maxHoldSec: 5 }, { threshold: 0.1, maxHoldSec: 9 }), { threshold: 0.1, maxHoldSec: 5 });
  const bad = (value: unknown, pattern: RegExp) =>
    assert.throws(
      () => gateSettings(value as never),
      (e: unknown) => isVigilError(e) && e.code === 'BAD_INPUT' && pattern.test(e.message),
    );
  bad({ threshold: 0 }, /gate\.threshold/);
  bad({ threshold: 1.5 }, /gate\.threshold/);
  bad({ threshold: 'x' }, /gate\.threshold/);
  bad({ maxHoldSec: 0 }, /gate\.maxHoldSec/);
  bad({ other: 1 }, /unknown field 'other'/);
  bad('on', /expected 'off'/);
  bad(0.1, /expected 'off'/);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isVigilError } from '../../common/errors.js';
import { DEFAULT_GATE, FrameGate, gateSettings, type RgbImage } from '../../src/engine/frameGate.js';

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

/**
 * Health watches without the service: the spec (every field checked), the monitor's judgement over
 * probes with explicit clocks (offline from the last frame, cleared by the next one, cooldown, a
 * stopped stream not judged, lag with its clearing margin, a raised condition carried across a
 * restart through the persisted alerts: a real WatchEngine on a real folder), and the frozen-image
 * detector on decoded-frame-sized buffers (identical frames, a keyframe's re-encoding, a static scene
 * with sensor noise). The real ingest paths (RTSP camera down and back, the model held, a still
 * camera) are in test/api/healthWatches.test.ts.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { FROZEN_MAX_MEAN_DELTA, FrozenDetector } from '../../src/engine/watches/healthFrozen.js';
import { type HealthProbe, HealthMonitor, LAG_CLEAR_SHARE } from '../../src/engine/watches/healthMonitor.js';
import { parseAnyWatchSpec, parseHealthWatchSpec } from '../../src/engine/watches/healthSpec.js';
import { describeDuration, watchLabel } from '../../src/engine/watches/healthText.js';
import { WatchEngine, type WatchHost } from '../../src/engine/watches/watchEngine.js';
import { WatchStore } from '../../src/engine/watches/watchStore.js';
import { MAX_WATCHES } from '../../src/engine/watches/types.js';

const host: WatchHost = { stream: 'cam', numLayers: 1, dim: 1, check: () => Promise.reject(new Error('no model here')), contextChunkIds: () => new Set() };
const T0 = 1_800_000_000_000;

/** A live camera's probe: frames until `lastFrameWall`, no lag unless given. */
function probe(over: Partial<HealthProbe> = {}): HealthProbe {
  return { monitored: true, lastFrameWall: T0, startedAt: T0 - 60_000, delivering: true, reason: null, lagMs: 0, lastT: 42, latest: { chunkId: 7, t: 41.5, tEnd: 42, score: 0, change: 0 }, ...over };
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** A W x H RGB frame: a gradient scene, plus Gaussian-ish noise of `sigma` levels (sum of uniforms). */
function frame(w: number, h: number, sigma: number, seed: number): { data: Uint8Array; width: number; height: number } {
  const r = rng(seed);
  const data = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) {
    const base = 60 + ((i % w) * 120) / w + ((Math.floor(i / w) * 40) / h);
    const noise = sigma === 0 ? 0 : (r() + r() + r() + r() - 2) * sigma * Math.sqrt(3);
    for (let c = 0; c < 3; c++) data[i * 3 + c] = Math.max(0, Math.min(255, Math.round(base + noise)));
  }
  return { data, width: w, height: h };
}

describe('health watch specs', () => {
  it('parses a health watch, defaults the cooldown, and refuses bad fields with BAD_INPUT', () => {
    const w = parseHealthWatchSpec({ kind: 'health', condition: 'offline', thresholdSec: 30, notify: ['ops', 'ops'] }, 5);
    assert.deepEqual({ ...w, id: 'x' }, { id: 'x', kind: 'health', condition: 'offline', thresholdSec: 30, cooldownSec: 60, notify: ['ops'], createdAt: 5 });
    assert.match(w.id, /^w_[0-9a-f]{12}$/);
    assert.equal(parseAnyWatchSpec({ kind: 'health', condition: 'lag', thresholdSec: 2.5, cooldownSec: 0 }).kind, 'health');
    assert.equal(parseAnyWatchSpec({ kind: 'question', question: 'Is the door open?', trigger: 'yes' }).kind, undefined, 'a question watch keeps no kind');
    const bad: Array<[unknown, RegExp]> = [
      [{ kind: 'health', condition: 'smoke', thresholdSec: 5 }, /unknown health condition "smoke"/],
      [{ kind: 'health', thresholdSec: 5 }, /condition/],
      [{ kind: 'health', condition: 'offline' }, /thresholdSec/],
      [{ kind: 'health', condition: 'offline', thresholdSec: 0.5 }, /thresholdSec must be .* \[1, 86400\]/],
      [{ kind: 'health', condition: 'offline', thresholdSec: Number.NaN }, /thresholdSec/],
      [{ kind: 'health', condition: 'offline', thresholdSec: 5, cooldownSec: 86_401 }, /cooldownSec/],
      [{ kind: 'health', condition: 'offline', thresholdSec: 5, trigger: 'yes' }, /unknown health watch field\(s\): trigger/],
      [{ kind: 'health', condition: 'offline', thresholdSec: 5, notify: ['no spaces'] }, /notify/],
      [{ kind: 'robot', question: 'q', trigger: 'yes' }, /kind/],
    ];
    for (const [spec, message] of bad) assert.throws(() => parseAnyWatchSpec(spec), (e: Error & { code?: string }) => e.code === 'BAD_INPUT' && message.test(e.message), JSON.stringify(spec));
  });

  it('describes durations and watches in a line', () => {
    assert.deepEqual([0, 42, 60, 190, 3600, 7500, 90_000].map(describeDuration), ['0 s', '42 s', '1 m', '3 m 10 s', '1 h', '2 h 5 m', '1 d 1 h']);
    assert.equal(watchLabel({ kind: 'health', condition: 'offline', thresholdSec: 90 }), 'health: offline for more than 1 m 30 s');
    assert.equal(watchLabel({ question: 'Is the door open?' }), 'Is the door open?');
  });
});

describe('health monitor', () => {
  let dir = '';
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-health-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('offline: raised past the threshold from the last frame, cleared by the next frame; cooldown delays a raise; a stopped stream is not judged', () => {
    const engine = new WatchEngine(host, { store: new WatchStore(dir) });
    const watch = parseHealthWatchSpec({ kind: 'health', condition: 'offline', thresholdSec: 10, cooldownSec: 30 });
    engine.addHealth(watch);
    const monitor = new HealthMonitor(engine);
    const down = probe({ delivering: false, reason: 'connection refused' });
    assert.deepEqual(monitor.tick(down, T0 + 10_000), [], 'exactly the threshold: not yet');
    const [raised] = monitor.tick(down, T0 + 10_400);
    assert.ok(raised);
    assert.equal(raised.answer, 'offline for 10 s (connection refused)');
    assert.deepEqual(raised.health, { condition: 'offline', resolved: false, since: T0, durationSec: 10.4 });
    assert.deepEqual({ t: raised.t, wallTime: raised.wallTime, checkMs: raised.checkMs, previousAnswer: raised.previousAnswer, stream: raised.stream }, { t: 42, wallTime: T0 + 10_400, checkMs: 0, previousAnswer: null, stream: 'cam' });
    assert.deepEqual(raised.evidence, [{ chunkId: 7, t: 41.5, tEnd: 42, score: 0, change: 0 }]);
    assert.deepEqual(monitor.tick(down, T0 + 60_000), [], 'raised once, not again while it lasts');
    // A stopped stream is not judged: nothing clears, nothing is raised.
    assert.deepEqual(monitor.tick(probe({ monitored: false, lastFrameWall: T0 + 61_000 }), T0 + 62_000), []);
    const [back] = monitor.tick(probe({ lastFrameWall: T0 + 190_000 }), T0 + 190_300);
    assert.equal(back!.answer, 'back online after 3 m 10 s');
    assert.deepEqual(back!.health, { condition: 'offline', resolved: true, since: T0, durationSec: 190.3 });
    assert.equal(back!.previousAnswer, raised.answer);
    // Down again 5 s later: past the threshold at +15 s, but the cooldown (30 s after the raise at +10.4 s) was long over.
    const again = monitor.tick(probe({ lastFrameWall: T0 + 195_000 }), T0 + 205_500);
    assert.equal(again.length, 1);
    // Back, and down again at once: the cooldown (30 s from the raise at +205.5 s) holds the raise back until +235.5 s.
    assert.equal(monitor.tick(probe({ lastFrameWall: T0 + 206_000 }), T0 + 206_100)[0]!.health!.resolved, true);
    assert.deepEqual(monitor.tick(probe({ lastFrameWall: T0 + 206_000 }), T0 + 230_000), []);
    assert.equal(monitor.tick(probe({ lastFrameWall: T0 + 206_000 }), T0 + 235_600)[0]!.answer, 'offline for 29 s');
    // Every alert is persisted and listed, in order.
    assert.deepEqual(
      engine.alerts().map((a) => [a.health!.resolved, a.wallTime - T0]),
      [
        [false, 10_400],
        [true, 190_300],
        [false, 205_500],
        [true, 206_100],
        [false, 235_600],
      ],
    );
    // No frame since the ingest started: counted from its start.
    const fresh = new HealthMonitor(new WatchEngine(host));
    fresh.host.healthWatches = () => [watch];
    fresh.host.recordAlert = () => {};
    assert.equal(fresh.tick(probe({ lastFrameWall: null, startedAt: T0 }), T0 + 11_000)[0]!.health!.since, T0);
  });

  it('a raised condition survives a restart: the clearing alert comes with the whole duration', () => {
    const engine = new WatchEngine(host, { store: new WatchStore(dir) });
    const watch = parseHealthWatchSpec({ kind: 'health', condition: 'offline', thresholdSec: 5, cooldownSec: 0 });
    engine.addHealth(watch);
    assert.equal(new HealthMonitor(engine).tick(probe({ delivering: false }), T0 + 6000).length, 1);
    // The service restarts: a new engine reads the watch and its alerts; the new ingest has no frame yet.
    const reopened = new WatchEngine(host, { store: new WatchStore(dir) });
    assert.deepEqual(reopened.list(), [watch]);
    const monitor = new HealthMonitor(reopened);
    assert.deepEqual(monitor.tick(probe({ lastFrameWall: null, startedAt: T0 + 100_000 }), T0 + 130_000), [], 'still raised: no second offline alert');
    const [back] = monitor.tick(probe({ lastFrameWall: T0 + 131_000, startedAt: T0 + 100_000 }), T0 + 131_200);
    assert.equal(back!.answer, 'back online after 2 m 11 s');
    assert.equal(back!.health!.since, T0);
  });

  it('lag: raised above the threshold, cleared at or below half of it', () => {
    const engine = new WatchEngine(host);
    engine.addHealth(parseHealthWatchSpec({ kind: 'health', condition: 'lag', thresholdSec: 4, cooldownSec: 0 }));
    const monitor = new HealthMonitor(engine);
    assert.deepEqual(monitor.tick(probe({ lagMs: 4000 }), T0), []);
    const [raised] = monitor.tick(probe({ lagMs: 6500 }), T0 + 1000);
    assert.equal(raised!.answer, 'falling behind: ingest 6.5 s behind the live source');
    assert.equal(raised!.health!.since, T0 + 1000 - 6500, 'since the oldest waiting frame arrived');
    assert.deepEqual(monitor.tick(probe({ lagMs: 4000 * LAG_CLEAR_SHARE + 1 }), T0 + 2000), [], 'below the threshold, not yet below half of it');
    const [cleared] = monitor.tick(probe({ lagMs: 300 }), T0 + 3000);
    assert.equal(cleared!.answer, 'caught up after 8 s (lag 0.3 s)');
  });

  it('frozen: needs frames that stay the same while the source delivers; a changed frame clears it', () => {
    const engine = new WatchEngine(host);
    engine.addHealth(parseHealthWatchSpec({ kind: 'health', condition: 'frozen', thresholdSec: 3, cooldownSec: 0 }));
    const monitor = new HealthMonitor(engine);
    assert.equal(monitor.wantsFrames, true);
    const still = frame(96, 96, 0, 1);
    for (let i = 0; i <= 8; i++) monitor.observeFrame(still, T0 + i * 500);
    assert.equal(monitor.frozenState.frozenMs, 4000);
    assert.deepEqual(monitor.tick(probe({ delivering: false }), T0 + 4000), [], 'not while the source is down (that is offline)');
    const [raised] = monitor.tick(probe(), T0 + 4100);
    assert.equal(raised!.answer, 'frozen image for 4 s (identical frames while live)');
    assert.equal(raised!.health!.since, T0);
    monitor.observeFrame({ data: new Uint8Array(96 * 96 * 3).fill(200), width: 96, height: 96 }, T0 + 4500);
    const [cleared] = monitor.tick(probe(), T0 + 4600);
    assert.equal(cleared!.answer, 'image changing again after 4 s');
  });
});

describe('frozen-image detector', () => {
  it('identical frames are one run; a static scene with sensor noise is not; a frame costs about a millisecond', () => {
    const side = 512;
    const same = new FrozenDetector();
    const still = frame(side, side, 0, 3);
    for (let i = 0; i < 5; i++) same.observe(still, i * 1000);
    assert.equal(same.lastDelta, 0);
    assert.equal(same.frozenMs, 4000);
    // Sensor noise of sigma 1 level (a clean camera) on a static scene: the 64x64 block means still move more than the bound.
    const noisy = new FrozenDetector();
    const deltas: number[] = [];
    const times: number[] = [];
    for (let i = 0; i < 6; i++) {
      const f = frame(side, side, 1, 100 + i);
      const t0 = performance.now();
      noisy.observe(f, i * 1000);
      times.push(performance.now() - t0);
      if (noisy.lastDelta !== null) deltas.push(noisy.lastDelta);
    }
    if (process.env.VIGIL_TEST_SHOW) console.log(JSON.stringify({ noiseDeltas: deltas.map((d) => d.toFixed(3)), msPerFrame: times.map((t) => t.toFixed(2)) }));
    assert.ok(Math.min(...deltas) > FROZEN_MAX_MEAN_DELTA, `deltas ${deltas.join(', ')}`);
    assert.equal(noisy.frozenMs, 0);
    // A change of one level over a small patch, under the bound, keeps the run; a visible change ends it.
    const tweaked = frame(side, side, 0, 3);
    for (let y = 0; y < 8; y++) for (let x = 0; x < 8; x++) tweaked.data[(y * side + x) * 3] = tweaked.data[(y * side + x) * 3]! + 1;
    same.observe(tweaked, 5000);
    assert.ok(same.lastDelta! > 0 && same.lastDelta! <= FROZEN_MAX_MEAN_DELTA);
    assert.equal(same.frozenMs, 5000);
    same.observe(frame(side, side, 8, 9), 6000);
    assert.equal(same.frozenMs, 0);
    assert.equal(same.lastChangeWall, 6000);
  });
});

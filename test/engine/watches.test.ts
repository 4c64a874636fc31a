/**
 * Watches over probe-needle streams (real model, store, index): the prefilter scores every encoded
 * frame against each watch's question queries and asks for a model check only when the score moves;
 * a watch on the red-screen needle's color alerts when the needle appears and not on haystack; a
 * watch that must never fire does not; watches and alerts survive close/reopen; bad input is refused.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { StreamSession } from '../../src/engine/streamSession.js';
import type { WatchCheck } from '../../src/engine/watches/types.js';
import type { PreprocessedImage } from '../../src/model/preprocess/imagePreprocessor.js';
import { disposeNeedleStreamParts, loadNeedleStreamParts, type NeedleStreamParts } from '../helpers/needleStream.js';
import { isVigilError } from '../../common/errors.js';

const FRAMES = 24;
const NEEDLE = [9, 10];
const RED = 'What color was the square on the red screen?';
const CYAN = 'What color was the square on the cyan screen?';
const WALL0 = 1_700_000_000_000;

describe('watches: probe-needle streams', () => {
  let parts: NeedleStreamParts;
  before(async () => {
    parts = await loadNeedleStreamParts('vigil-watches-');
  });
  after(() => disposeNeedleStreamParts(parts));

  const open = (name: string) => StreamSession.open(parts.model, { dir: path.join(parts.scratch, name), sinkFrames: 1, windowFrames: 4, gate: 'off' });

  async function feed(session: StreamSession, frames: (i: number) => PreprocessedImage, from = 0, to = FRAMES): Promise<void> {
    for (let i = from; i < to; i++) await session.addFrame(frames(i), i, WALL0 + i * 1000);
    await session.watches.idle();
  }
  const withNeedle = (i: number) => (NEEDLE.includes(i) ? parts.needle : parts.haystack);

  it('alerts when the needle appears, clears when it leaves the window, checks the model on few frames; a never-firing watch stays quiet', async () => {
    const session = await open('needle');
    try {
      const green = await session.addWatch({ question: RED, trigger: 'answer-matches', pattern: 'green', cooldownSec: 0, maxIntervalSec: 60 });
      const never = await session.addWatch({ question: CYAN, trigger: 'answer-changes', maxIntervalSec: 60 });
      const checks: WatchCheck[] = [];
      session.watches.onCheck((c) => checks.push(c));
      await feed(session, withNeedle);
      const alerts = session.alerts();
      assert.equal(alerts.length, 1, JSON.stringify(alerts));
      const [alert] = alerts;
      assert.equal(alert!.watchId, green.id);
      assert.equal(alert!.answer, 'green');
      assert.equal(alert!.t, NEEDLE[0], 'alert latency: the needle frame itself');
      assert.equal(alert!.wallTime, WALL0 + NEEDLE[0]! * 1000);
      assert.equal(alert!.stream, 'needle');
      assert.ok(alert!.checkMs > 0);
      assert.deepEqual(alert!.evidence.map((e) => e.t), [NEEDLE[0]]);
      assert.ok(alert!.evidence[0]!.score > 0);
      // The condition ends once no needle frame is in the window any more (window of 4 frames).
      const greenChecks = checks.filter((c) => c.watchId === green.id);
      const cleared = greenChecks.find((c) => c.t > NEEDLE[0]! && !c.condition);
      assert.ok(cleared, JSON.stringify(greenChecks));
      assert.ok(cleared.t > NEEDLE.at(-1)! && cleared.t <= NEEDLE.at(-1)! + 5, `cleared at ${cleared.t}`);
      // The cyan watch saw 'unknown' every time.
      const cyanChecks = checks.filter((c) => c.watchId === never.id);
      assert.ok(cyanChecks.every((c) => c.answer === 'unknown' && !c.alert), JSON.stringify(cyanChecks));
      const stats = session.watches.stats();
      assert.equal(stats[green.id]!.framesScored, FRAMES);
      assert.equal(stats[green.id]!.errors, 0);
      const fraction = stats[green.id]!.checks / FRAMES;
      const cyanFraction = stats[never.id]!.checks / FRAMES;
      console.log(`# model checks: green watch ${stats[green.id]!.checks}/${FRAMES} (${JSON.stringify(stats[green.id]!.checksByReason)}), cyan watch ${stats[never.id]!.checks}/${FRAMES}; prefilter ${session.watches.prefilterMsPerFrame.toFixed(3)} ms/frame`);
      assert.ok(fraction <= 0.25, `green watch checked ${fraction} of frames`);
      assert.ok(cyanFraction <= 2 / FRAMES, `cyan watch checked ${cyanFraction} of frames`);
      assert.ok(session.stats().meanPhaseMs.watchPrefilterMs! < 5);
    } finally {
      await session.dispose();
    }
  });

  it('haystack only: no alert, one model check (the first frame), the prefilter skips the rest', async () => {
    const session = await open('haystack');
    try {
      const w = await session.addWatch({ question: RED, trigger: 'answer-matches', pattern: 'green', maxIntervalSec: 60 });
      await feed(session, () => parts.haystack);
      assert.deepEqual(session.alerts(), []);
      assert.deepEqual(session.watches.stats()[w.id]!.checksByReason, { first: 1, score: 0, interval: 0, 'left-window': 0 });
    } finally {
      await session.dispose();
    }
  });

  it('maxIntervalSec forces a check on a steady scene', async () => {
    const session = await open('interval');
    try {
      const w = await session.addWatch({ question: RED, trigger: 'answer-matches', pattern: 'green', maxIntervalSec: 5 });
      await feed(session, () => parts.haystack, 0, 12);
      const stats = session.watches.stats()[w.id]!;
      assert.equal(stats.checksByReason.first, 1);
      assert.equal(stats.checksByReason.interval, 2, JSON.stringify(stats));
    } finally {
      await session.dispose();
    }
  });

  it('watches and alerts persist across close and reopen; the cooldown holds', async () => {
    const dir = 'persist';
    let session = await open(dir);
    const w = await session.addWatch({ question: RED, trigger: 'answer-matches', pattern: 'gr[e]+n', cooldownSec: 100, maxIntervalSec: 60 });
    await feed(session, withNeedle, 0, 12);
    assert.equal(session.alerts().length, 1);
    await session.dispose();
    session = await open(dir);
    try {
      assert.deepEqual(session.listWatches(), [w]);
      assert.deepEqual(session.alerts().map((a) => a.watchId), [w.id]);
      assert.deepEqual(session.alerts({ since: WALL0 + 10_000 }), []);
      // A needle again after the restart, inside the cooldown (100 s): the check sees it, no second alert.
      const checks: WatchCheck[] = [];
      session.watches.onCheck((c) => checks.push(c));
      await feed(session, (i) => (i === 14 ? parts.needle : parts.haystack), 12, 16);
      assert.ok(checks.some((c) => c.condition && c.suppressed), JSON.stringify(checks));
      assert.equal(session.alerts().length, 1);
      assert.equal(session.removeWatch(w.id), true);
      assert.equal(session.removeWatch(w.id), false);
      assert.deepEqual(session.listWatches(), []);
    } finally {
      await session.dispose();
    }
    session = await open(dir);
    try {
      assert.deepEqual(session.listWatches(), []);
      assert.equal(session.alerts().length, 1, 'alerts outlive their watch');
    } finally {
      await session.dispose();
    }
  });

  it('addFrame does not wait for the check it asks for; a failing check never breaks ingest', async () => {
    const session = await open('nonblocking');
    try {
      const w = await session.addWatch({ question: RED, trigger: 'answer-matches', pattern: 'green' });
      const checks: WatchCheck[] = [];
      session.watches.onCheck((c) => checks.push(c));
      await session.addFrame(parts.haystack, 0, WALL0);
      assert.equal(checks.length, 0, 'the first check is queued behind the frame, not awaited by it');
      await session.watches.idle();
      assert.equal(checks.length, 1);
      // Every check of a second watch fails (its prompt cannot be made): counted, the frames go in.
      const format = session.encoder.format as { question: (q: string) => string };
      const question = format.question.bind(format);
      format.question = (q) => {
        if (q.startsWith('BROKEN')) throw new Error('check failed on purpose');
        return question(q);
      };
      const broken = await session.addWatch({ question: `BROKEN ${RED}`, trigger: 'yes', maxIntervalSec: 1 });
      await feed(session, withNeedle, 1, 12);
      assert.equal(session.stats().framesEncoded, 12);
      const stats = session.watches.stats();
      assert.ok(stats[broken.id]!.errors >= 5, JSON.stringify(stats[broken.id]));
      assert.match(stats[broken.id]!.lastError!, /check failed on purpose/);
      assert.equal(stats[w.id]!.errors, 0);
      assert.deepEqual(session.alerts().map((a) => [a.watchId, a.t]), [[w.id, NEEDLE[0]]]);
    } finally {
      await session.dispose();
    }
  });

  it('bad input is BAD_INPUT: malformed regex, unknown trigger, a pattern without answer-matches, empty question, too many watches', async () => {
    const session = await open('bad');
    const bad = async (spec: unknown, message: RegExp) =>
      assert.rejects(session.addWatch(spec), (e: unknown) => isVigilError(e) && e.code === 'BAD_INPUT' && message.test(e.message));
    try {
      await bad({ question: RED, trigger: 'answer-matches', pattern: '(green' }, /not a valid regular expression/);
      await bad({ question: RED, trigger: 'answer-matches' }, /needs a pattern/);
      await bad({ question: RED, trigger: 'sometimes' }, /unknown trigger/);
      await bad({ question: RED, trigger: 'yes', pattern: 'x' }, /only for trigger answer-matches/);
      await bad({ question: ' ', trigger: 'yes' }, /non-empty question/);
      await bad({ question: RED, trigger: 'yes', cooldownSec: -1 }, /cooldownSec/);
      await bad({ question: RED, trigger: 'yes', maxIntervalSec: 0 }, /maxIntervalSec/);
      await bad({ question: RED, trigger: 'yes', notify: 'x' }, /notify must be a list of webhook ids/);
      await bad({ question: RED, trigger: 'yes', notify: ['a b'] }, /notify must be a list of webhook ids/);
      await bad({ question: RED, trigger: 'yes', notifyMe: ['home'] }, /unknown watch field\(s\): notifyMe/);
      for (let i = 0; i < 16; i++) await session.addWatch({ question: `${RED} ${i}`, trigger: 'yes' });
      await bad({ question: RED, trigger: 'yes' }, /at most 16 watches/);
      assert.equal(session.listWatches().length, 16);
    } finally {
      await session.dispose();
    }
  });
});

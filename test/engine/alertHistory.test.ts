/**
 * Bounded alert history (watches/alertHistory.ts) on real files: more alerts than the bound -> the
 * oldest are dropped from memory and from alerts.ndjson, the file is compacted (temp file, fsync,
 * rename) once it passes the bound by its margin, and a restart (a new engine on the same folder)
 * reads the bounded set. A file written without the bound, a torn last line and a temp file left by a
 * crash during a compaction are handled at open.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { AlertHistory } from '../../src/engine/watches/alertHistory.js';
import { parseHealthWatchSpec } from '../../src/engine/watches/healthSpec.js';
import { WatchEngine, type WatchHost } from '../../src/engine/watches/watchEngine.js';
import { WatchStore } from '../../src/engine/watches/watchStore.js';
import { ALERT_COMPACT_MARGIN, type Alert, MAX_ALERTS_PER_STREAM } from '../../src/engine/watches/types.js';

const host: WatchHost = { stream: 'cam', numLayers: 1, dim: 1, check: () => Promise.reject(new Error('no model here')), contextChunkIds: () => new Set() };

function alertAt(i: number, watchId: string): Alert {
  return {
    id: `a_${String(i).padStart(6, '0')}`,
    watchId,
    stream: 'cam',
    t: i,
    wallTime: 1_800_000_000_000 + i * 1000,
    answer: i % 2 === 0 ? `offline for ${i} s (connection refused)` : `back online after ${i} s`,
    evidence: [],
    checkMs: 0,
    previousAnswer: null,
    health: { condition: 'offline', resolved: i % 2 === 1, since: 1_800_000_000_000 + (i - 1) * 1000, durationSec: i },
  };
}

/** Non-empty lines of alerts.ndjson. */
function fileLines(dir: string): string[] {
  return fs
    .readFileSync(path.join(dir, 'watches', 'alerts.ndjson'), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '');
}

describe('bounded alert history', () => {
  let dir = '';
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-alerthistory-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('keeps the newest N in memory and on disk, compacts the file past the margin, and a restart reads the bounded set', () => {
    const max = 50;
    const margin = Math.ceil(max * ALERT_COMPACT_MARGIN);
    const engine = new WatchEngine(host, { store: new WatchStore(dir), maxAlerts: max });
    const watch = parseHealthWatchSpec({ kind: 'health', condition: 'offline', thresholdSec: 5 });
    engine.addHealth(watch);
    const total = 137;
    let maxLines = 0;
    for (let i = 0; i < total; i++) {
      engine.recordAlert(alertAt(i, watch.id));
      assert.ok(engine.alerts().length <= max, `alert ${i}: ${engine.alerts().length} held`);
      maxLines = Math.max(maxLines, fileLines(dir).length);
    }
    // The file never held more than the bound plus its margin.
    assert.equal(maxLines, max + margin);
    const kept = engine.alerts();
    assert.deepEqual(
      kept.map((a) => a.id),
      Array.from({ length: max }, (_, k) => alertAt(total - max + k, watch.id).id),
      'the newest 50, oldest first',
    );
    const stats = engine.alertHistoryStats();
    assert.equal(stats.alerts, max);
    assert.equal(stats.dropped, total - max);
    // Compacted every margin+1 alerts once past the bound: (137 - 55) / 6 rounded up.
    assert.equal(stats.compactions, Math.ceil((total - max - margin) / (margin + 1)));
    assert.ok(stats.fileLines >= max && stats.fileLines <= max + margin, JSON.stringify(stats));
    assert.equal(fileLines(dir).length, stats.fileLines);
    assert.ok(!fs.existsSync(path.join(dir, 'watches', 'alerts.ndjson.tmp')), 'the temp file was renamed over the old one');
    // The file's newest lines are the alerts kept, in order.
    const onDisk = fileLines(dir).map((l) => (JSON.parse(l) as Alert).id);
    assert.deepEqual(onDisk.slice(-max), kept.map((a) => a.id));
    assert.equal(engine.lastAlertOf(watch.id)?.id, alertAt(total - 1, watch.id).id);

    // A restart: the same bounded set, and the filters over it.
    const reopened = new WatchEngine(host, { store: new WatchStore(dir), maxAlerts: max });
    assert.deepEqual(reopened.alerts(), kept);
    assert.deepEqual(reopened.list(), [watch]);
    const since = kept[10]!.wallTime;
    assert.deepEqual(reopened.alerts({ since }), kept.slice(10));
    assert.equal(reopened.lastAlertOf(watch.id)?.health?.resolved, (total - 1) % 2 === 1);
  });

  it('a file written without the bound is cut to it at open; a torn line and a temp file from a crash mid-compaction do no harm', () => {
    const store = new WatchStore(dir);
    const total = 300;
    for (let i = 0; i < total; i++) store.appendAlert(alertAt(i, 'w_legacy'));
    // A crash during a compaction leaves a partial temp file (the real file is untouched) ...
    fs.writeFileSync(path.join(dir, 'watches', 'alerts.ndjson.tmp'), `${JSON.stringify(alertAt(0, 'w_legacy'))}\n{"id":"a_`);
    // ... and a crash mid-append a torn last line.
    fs.appendFileSync(path.join(dir, 'watches', 'alerts.ndjson'), '{"id":"a_torn","wat');
    assert.equal(fileLines(dir).length, total + 1);

    const history = new AlertHistory(new WatchStore(dir), 40);
    history.load();
    assert.equal(history.size, 40);
    assert.deepEqual(
      history.filter().map((a) => a.id),
      Array.from({ length: 40 }, (_, k) => alertAt(total - 40 + k, 'w_legacy').id),
    );
    // Compacted at open: the newest 40, no torn line, and the stale temp file replaced by the rename.
    assert.deepEqual(
      fileLines(dir).map((l) => (JSON.parse(l) as Alert).id),
      history.filter().map((a) => a.id),
    );
    assert.ok(!fs.existsSync(path.join(dir, 'watches', 'alerts.ndjson.tmp')));
    assert.deepEqual(history.stats(), { alerts: 40, fileLines: 40, dropped: total + 1 - 40, compactions: 1 });
    // It goes on appending after the compaction.
    history.append(alertAt(total, 'w_legacy'));
    assert.equal(fileLines(dir).length, 41);
    assert.equal(history.filter().at(-1)!.id, alertAt(total, 'w_legacy').id);
  });

  it('the default bound is 10,000 alerts per stream', () => {
    assert.equal(MAX_ALERTS_PER_STREAM, 10_000);
    assert.equal(new AlertHistory(undefined).max, 10_000);
    assert.equal(new AlertHistory(undefined).margin, 1000);
    assert.throws(() => new AlertHistory(undefined, 0), RangeError);
  });
});

/**
 * `storage: 'kivi4'` as a stream setting (issue 15 item 2): the API schemas and `vigil ask
 * --storage` accept it where the storage dtypes are listed, and a memory stored as 4-bit KIVI from
 * the start answers its needle. Real CLI (bin/vigil.js), probe-needle model.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { makeProbeClip } from '../../ingest/index.js';
import { CreateStreamBody, UploadFields } from '../../api/schemas/streams.js';
import { probeModelDir } from '../helpers/probeModels.js';
import { runVigil } from '../helpers/runVigil.js';

describe("storage 'kivi4'", () => {
  let scratch: string;
  let clip: string;
  const question = 'What color was the square on the red screen?';

  before(async () => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-kivi4-'));
    probeModelDir('probe-needle');
    clip = (await makeProbeClip({ out: path.join(scratch, 'clip.mp4'), durationS: 40, needles: [{ start: 12, duration: 3, background: 'red', square: 'cyan' }] })).clip;
  });
  after(() => fs.rmSync(scratch, { recursive: true, force: true }));

  it('the stream settings accept it (and still refuse an unknown dtype)', () => {
    assert.equal(CreateStreamBody.safeParse({ source: 'rtsp://cam/1', storage: 'kivi4' }).success, true);
    assert.equal(CreateStreamBody.safeParse({ source: 'rtsp://cam/1', storage: 'kivi2' }).success, false);
    assert.equal(UploadFields.safeParse({ storage: 'kivi4' }).success, true);
  });

  it('vigil ask --storage kivi4 stores 4-bit KIVI records and answers the needle', async () => {
    const data = path.join(scratch, 'data');
    const r = await runVigil(['ask', clip, question, '--data', data, '--storage', 'kivi4', '--window', '4', '--gate', 'off', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { answer: string }).answer, 'cyan'); // one question: one object
    const root = path.join(data, 'offline');
    const memory = fs.readdirSync(root, { withFileTypes: true }).find((e) => e.isDirectory())!.name;
    const db = new Database(path.join(root, memory, 'kv', 'manifest.sqlite'), { readonly: true });
    try {
      const dtypes = db.prepare('SELECT dtype, COUNT(*) AS n FROM chunks GROUP BY dtype').all() as Array<{ dtype: string; n: number }>;
      assert.equal(dtypes.length, 1);
      assert.equal(dtypes[0]!.dtype, 'kivi4');
      assert.ok(dtypes[0]!.n > 20);
    } finally {
      db.close();
    }
    const bad = await runVigil(['ask', clip, question, '--data', data, '--storage', 'kivi2']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--storage must be float32, float16, int8, kivi4, got 'kivi2'/);
  });
});

/**
 * HTTP sources behind Digest authentication (RFC 2617, MD5 with qop=auth, as IP cameras serve
 * MJPEG/MP4): Vigil answers the challenge itself (ffmpeg only talks to the loopback relay), never
 * sends the password in clear when Digest is offered, and reports a wrong password as SOURCE_AUTH.
 * The server checks each response with its own RFC 2617 arithmetic (node:crypto), independent of
 * Vigil's implementation.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { checkSource } from '../../ingest/check.js';
import type { ProbeClip } from '../../ingest/probeClip.js';
import { needleClip } from '../fixtures/ingestClips.js';
import { assertNoChildrenLeft } from '../fixtures/processes.js';

const USER = 'viewer';
const PASSWORD = 'digest-only-pa55';
const REALM = 'camera';
const md5 = (s: string) => createHash('md5').update(s).digest('hex');

let clip: ProbeClip;
let server: http.Server;
let base: string;
const seen = { basic: 0, digestOk: 0, digestBad: 0 };

function params(header: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of header.slice(header.indexOf(' ') + 1).matchAll(/(\w+)=(?:"([^"]*)"|([^,\s]*))/g)) out[m[1]!.toLowerCase()] = m[2] ?? m[3] ?? '';
  return out;
}

before(async () => {
  clip = await needleClip();
  const nonces = new Set<string>();
  server = http.createServer((req, res) => {
    const auth = req.headers.authorization ?? '';
    if (/^basic /i.test(auth)) seen.basic++;
    let ok = false;
    if (/^digest /i.test(auth)) {
      const p = params(auth);
      const ha1 = md5(`${USER}:${REALM}:${PASSWORD}`);
      const ha2 = md5(`GET:${p.uri}`);
      const expected = md5(`${ha1}:${p.nonce}:${p.nc}:${p.cnonce}:${p.qop}:${ha2}`);
      ok = p.username === USER && nonces.has(p.nonce ?? '') && p.qop === 'auth' && p.uri === req.url && p.response === expected;
      if (ok) seen.digestOk++;
      else seen.digestBad++;
    }
    if (!ok) {
      const nonce = randomBytes(8).toString('hex');
      nonces.add(nonce);
      res.writeHead(401, { 'www-authenticate': `Digest realm="${REALM}", nonce="${nonce}", qop="auth", algorithm=MD5`, 'content-length': '0' });
      return res.end();
    }
    const size = fs.statSync(clip.clip).size;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const start = range ? Number(range[1]) : 0;
    const end = range?.[2] ? Number(range[2]) : size - 1;
    res.writeHead(range ? 206 : 200, {
      'content-type': 'video/mp4',
      'accept-ranges': 'bytes',
      'content-length': String(end - start + 1),
      ...(range ? { 'content-range': `bytes ${start}-${end}/${size}` } : {}),
    });
    fs.createReadStream(clip.clip, { start, end }).pipe(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  base = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  assertNoChildrenLeft('after the HTTP auth tests');
});

describe('HTTP Digest authentication, answered by Vigil', () => {
  it('right credentials: frames arrive; the password is never sent in clear', async () => {
    const report = await checkSource(`http://${USER}:${PASSWORD}@${base}/cam.mp4`, { frames: 2, socketTimeoutS: 5, timeoutS: 30 });
    assert.deepEqual(report.frames.map((f) => f.t), [0, 1]);
    assert.ok(seen.digestOk > 0, 'digest answers were accepted');
    assert.equal(seen.basic, 0, 'no Basic header (the password in clear) was ever sent');
  });

  it('a wrong password is SOURCE_AUTH, without the password in the message', async () => {
    await assert.rejects(checkSource(`http://${USER}:wrong-secret@${base}/cam.mp4`, { frames: 2, socketTimeoutS: 5, timeoutS: 30 }), (e: unknown) => {
      const error = e as { code?: string; message: string };
      return error.code === 'SOURCE_AUTH' && /401/.test(error.message) && !error.message.includes('wrong-secret');
    });
    assert.ok(seen.digestBad > 0);
  });
});

/**
 * A live HLS stream, followed by Vigil (ingest/net/hlsFeed.ts): a loopback server publishes a
 * sliding-window playlist (no ENDLIST) over the segments of a real clip, one more every segment
 * duration, as a live packager does. Vigil must start near the live edge, reload the playlist, feed
 * ffmpeg the new segments in order, and report the source as live; a master playlist is followed
 * to its variant.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openSource } from '../../ingest/openSource.js';
import type { Frame } from '../../ingest/types.js';
import { hlsOf, needleClip, tempDir } from '../fixtures/ingestClips.js';
import { assertNoChildrenLeft } from '../fixtures/processes.js';

let server: http.Server;
let base: string;
const fetched: string[] = [];

before(async () => {
  const clip = await needleClip();
  const dir = hlsOf(clip.clip, tempDir());
  const segments = fs.readdirSync(dir).filter((f) => f.endsWith('.ts')).sort();
  const started = Date.now();
  const segmentS = 2;
  server = http.createServer((req, res) => {
    const name = new URL(req.url ?? '/', 'http://h').pathname.slice(1);
    if (name === 'master.m3u8') {
      res.writeHead(200, { 'content-type': 'application/vnd.apple.mpegurl' });
      return res.end('#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=300000,RESOLUTION=320x180\nlive.m3u8\n');
    }
    if (name === 'live.m3u8') {
      // Segment k is "published" at k * 2 s after the start (the first three at once); a window of 4.
      const published = Math.min(segments.length, 3 + Math.floor((Date.now() - started) / (segmentS * 1000)));
      const first = Math.max(0, published - 4);
      const lines = ['#EXTM3U', '#EXT-X-VERSION:3', `#EXT-X-TARGETDURATION:${segmentS}`, `#EXT-X-MEDIA-SEQUENCE:${first}`];
      for (let k = first; k < published; k++) lines.push(`#EXTINF:${segmentS}.0,`, segments[k]!);
      res.writeHead(200, { 'content-type': 'application/vnd.apple.mpegurl' });
      return res.end(`${lines.join('\n')}\n`);
    }
    if (segments.includes(name)) {
      fetched.push(name);
      res.writeHead(200, { 'content-type': 'video/mp2t' });
      return fs.createReadStream(path.join(dir, name)).pipe(res);
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  base = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  assertNoChildrenLeft('after the live HLS tests');
});

describe('live HLS', () => {
  it('follows a sliding live playlist through its master: live, in order, reloading the playlist', async () => {
    const source = await openSource(`${base}/master.m3u8`, { fps: 1, decode: 'all', maxFrames: 8, socketTimeoutS: 5 });
    const frames: Frame[] = [];
    for await (const f of source) frames.push(f);
    const stats = source.stats();
    assert.deepEqual([stats.kind, stats.live, stats.endReason], ['hls', true, 'max-frames']);
    assert.match(source.probe?.container ?? '', /^hls,mpegts/);
    assert.equal(frames.length, 8);
    assert.ok(frames.every((f, i) => i === 0 || f.t > frames[i - 1]!.t), `times increase: ${frames.map((f) => f.t).join(',')}`);
    // 8 frames at 1 fps need segments published after the start: the playlist was reloaded.
    const numbers = fetched.map((n) => Number(/(\d+)/.exec(n)![1]));
    assert.ok(Math.max(...numbers) >= 3, `a segment published later was fetched: ${fetched.join(',')}`);
    assert.ok(Math.min(...numbers) >= 0 && !numbers.includes(-1));
    assertNoChildrenLeft('after the live source');
  });
});

/**
 * Issue 13, "must hold" 1-3, through the real service: no connection to a refused address at any hop,
 * files and uploads only as plain containers, and no credentials in any child's argv.
 *
 * Layout: the "origin" (an allowed server an attacker controls) listens on 127.0.0.2, allowed with
 * allowNetworks ['127.0.0.2/32']; the "victim" listens on 127.0.0.1, which the policy refuses. The
 * origin answers with every hop type that once led ffmpeg to the victim: HTTP redirects (plain and
 * odd address spellings), HLS variant playlists, segments, init sections and keys, a DASH manifest,
 * RTSP redirects, and a DNS name that re-resolves to the victim (the resolver is injected, because a
 * test cannot run a DNS server here: the rest is real ffmpeg, HTTP and RTSP).
 */
import assert from 'node:assert/strict';
import dns from 'node:dns/promises';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { requireRtsp, startRtspServer, type RtspServer } from '../fixtures/rtspServer.js';
import { listenLoopback } from '../helpers/loopbackServer.js';
import { AUTH, disposeSharedModel, makeClips, startTestServer, tempDir, type TestServer, waitFor } from './helpers.js';

after(() => disposeSharedModel());

interface Counting {
  port: number;
  connections: number;
  requests: string[];
  close(): Promise<void>;
}

/** A server that records every TCP connection (and HTTP request line) it gets: the victim. */
async function countingServer(address: string, port = 0, httpLike = true): Promise<Counting> {
  const state = { connections: 0, requests: [] as string[] };
  const server = net.createServer((socket) => {
    state.connections++;
    socket.once('data', (data) => {
      state.requests.push(data.toString('latin1').split('\r\n')[0] ?? '');
      if (httpLike) socket.end('HTTP/1.1 200 OK\r\ncontent-type: video/mp2t\r\ncontent-length: 0\r\n\r\n');
    });
  });
  const listening = await listenLoopback(server, address, port);
  return {
    port: listening.port,
    get connections() {
      return state.connections;
    },
    requests: state.requests,
    close: listening.close,
  };
}

/** The attacker's allowed origin on 127.0.0.2: every route leads to the victim one way or another. */
function startOrigin(victimPort: () => number, clips: string): Promise<{ port: number; close(): Promise<void> }> {
  const victim = () => `http://127.0.0.1:${victimPort()}`;
  const routes: Record<string, () => { status: number; headers?: Record<string, string>; body?: string | Buffer }> = {
    '/redirect.mp4': () => ({ status: 302, headers: { location: `${victim()}/clip.mp4` } }),
    '/redirect-mapped.mp4': () => ({ status: 307, headers: { location: `http://[::ffff:127.0.0.1]:${victimPort()}/clip.mp4` } }),
    '/redirect-number.mp4': () => ({ status: 301, headers: { location: `http://2130706433:${victimPort()}/clip.mp4` } }),
    '/redirect-hex.mp4': () => ({ status: 302, headers: { location: `http://0x7f.0.0.1:${victimPort()}/clip.mp4` } }),
    '/redirect-file.mp4': () => ({ status: 302, headers: { location: 'file:///etc/passwd' } }),
    '/master.m3u8': () => ({ status: 200, body: `#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x480\n${victim()}/variant.m3u8\n` }),
    '/nested.m3u8': () => ({ status: 200, body: '#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\n/hop.m3u8\n' }),
    '/hop.m3u8': () => ({ status: 302, headers: { location: `${victim()}/variant.m3u8` } }),
    '/segments.m3u8': () => ({ status: 200, body: `#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n${victim()}/seg0.ts\n#EXTINF:2,\n${victim()}/seg1.ts\n#EXT-X-ENDLIST\n` }),
    '/live-segments.m3u8': () => ({ status: 200, body: `#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:2,\n${victim()}/seg7.ts\n` }),
    '/init.m3u8': () => ({ status: 200, body: `#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI="${victim()}/init.mp4"\n#EXTINF:2,\n/seg0.m4s\n#EXT-X-ENDLIST\n` }),
    '/key.m3u8': () => ({ status: 200, body: `#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-KEY:METHOD=AES-128,URI="${victim()}/key"\n#EXTINF:2,\n/seg0.ts\n#EXT-X-ENDLIST\n` }),
    '/manifest.mpd': () => ({ status: 200, headers: { 'content-type': 'application/dash+xml' }, body: `<?xml version="1.0"?>\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011"><Period><AdaptationSet><Representation><BaseURL>${victim()}/v.mp4</BaseURL></Representation></AdaptationSet></Period></MPD>\n` }),
    '/renamed.mp4': () => ({ status: 200, body: `#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n${victim()}/seg0.ts\n#EXT-X-ENDLIST\n` }),
    '/clip.mp4': () => ({ status: 200, headers: { 'content-type': 'video/mp4', connection: 'close' }, body: fs.readFileSync(path.join(clips, 'a.mp4')) }),
  };
  const server = http.createServer((req, res) => {
    const route = routes[new URL(req.url ?? '/', 'http://origin').pathname];
    if (!route) return res.writeHead(404, { 'content-length': '0' }).end();
    const { status, headers = {}, body } = route();
    res.writeHead(status, { 'content-length': String(body ? Buffer.byteLength(body) : 0), ...headers }).end(body);
  });
  return listenLoopback(server, '127.0.0.2');
}

/** A fake RTSP server on 127.0.0.2 that redirects every request to `location()`. */
function rtspRedirector(location: () => string): Promise<{ port: number; close(): Promise<void> }> {
  const server = net.createServer((socket) => {
    let buffered = '';
    socket.on('data', (data) => {
      buffered += data.toString('latin1');
      while (buffered.includes('\r\n\r\n')) {
        const end = buffered.indexOf('\r\n\r\n');
        const head = buffered.slice(0, end);
        buffered = buffered.slice(end + 4);
        const cseq = /^CSeq:\s*(\d+)/im.exec(head)?.[1] ?? '1';
        socket.write(`RTSP/1.0 302 Moved Temporarily\r\nCSeq: ${cseq}\r\nLocation: ${location()}\r\n\r\n`);
      }
    });
  });
  return listenLoopback(server, '127.0.0.2');
}

async function failedWith(server: TestServer, id: string, timeoutMs = 60_000): Promise<{ code: string; message: string }> {
  const status = await waitFor(`stream ${id} to fail`, async () => {
    const s = (await request(server.url).get(`/v1/streams/${id}`).set(AUTH)).body;
    return s.state === 'failed' || s.state === 'ended' ? s : undefined;
  }, timeoutMs);
  assert.equal(status.state, 'failed', `${id}: ${JSON.stringify(status)}`);
  return status.error;
}

describe('every hop a source causes obeys the URL policy', () => {
  let server: TestServer;
  let victim: Counting;
  let rtspVictim: Counting;
  let origin: { port: number; close(): Promise<void> };
  let redirector: { port: number; close(): Promise<void> };
  let rebindVictim: Counting;
  let filesDir: string;
  const lookups: string[] = [];

  before(async () => {
    const clips = await makeClips();
    victim = await countingServer('127.0.0.1');
    rtspVictim = await countingServer('127.0.0.1', 0, false);
    origin = await startOrigin(() => victim.port, clips);
    // The rebinding name points at the origin's port: the victim listens on the same port on 127.0.0.1.
    rebindVictim = await countingServer('127.0.0.1', origin.port);
    redirector = await rtspRedirector(() => `rtsp://127.0.0.1:${rtspVictim.port}/stream`);
    filesDir = tempDir('vigil-files-');
    // Injected resolver (no DNS server in a test): "rebind.test" is the origin for the creation check
    // and the first connection, then the victim.
    const lookup = async (host: string) => {
      lookups.push(host);
      if (host !== 'rebind.test') return (await dns.lookup(host, { all: true })).map((a) => a.address);
      return lookups.filter((h) => h === 'rebind.test').length <= 2 ? ['127.0.0.2'] : ['127.0.0.1'];
    };
    server = await startTestServer({ filesDir, manager: { policy: { filesDir, allowNetworks: ['127.0.0.2/32'], lookup } } });
  });
  after(async () => {
    await server?.close();
    await Promise.all([victim?.close(), rtspVictim?.close(), origin?.close(), redirector?.close(), rebindVictim?.close()]);
  });

  const cases: Array<[string, string, RegExp]> = [
    ['http-redirect', '/redirect.mp4', /SOURCE_FORBIDDEN/],
    ['redirect-mapped-ipv6', '/redirect-mapped.mp4', /SOURCE_FORBIDDEN/],
    ['redirect-one-number', '/redirect-number.mp4', /SOURCE_FORBIDDEN/],
    ['redirect-hex', '/redirect-hex.mp4', /SOURCE_FORBIDDEN/],
    ['redirect-to-file', '/redirect-file.mp4', /SOURCE_FORBIDDEN/],
    ['hls-variant', '/master.m3u8', /SOURCE_FORBIDDEN/],
    ['hls-nested-variant-redirect', '/nested.m3u8', /SOURCE_FORBIDDEN/],
    ['hls-segments', '/segments.m3u8', /SOURCE_FORBIDDEN/],
    ['hls-live-segments', '/live-segments.m3u8', /SOURCE_FORBIDDEN/],
    ['hls-init-section', '/init.m3u8', /SOURCE_FORBIDDEN/],
    ['hls-key', '/key.m3u8', /UNSUPPORTED_CODEC/],
    ['dash', '/manifest.mpd', /SOURCE_FORBIDDEN/],
    ['playlist-named-mp4', '/renamed.mp4', /SOURCE_FORBIDDEN/],
  ];
  for (const [id, route, code] of cases) {
    it(`${id}: the victim sees nothing and the stream fails clearly`, async () => {
      const before = victim.connections;
      const created = await request(server.url).post('/v1/streams').set(AUTH).send({ id, source: `http://127.0.0.2:${origin.port}${route}` });
      assert.equal(created.status, 201, created.text);
      const error = await failedWith(server, id);
      assert.match(error.code, code, JSON.stringify(error));
      assert.ok(!error.message.includes(filesDir) && !error.message.includes(server.dataDir), 'no server paths in the error');
      assert.equal(victim.connections - before, 0, `victim contacted: ${victim.requests.join(' | ')}`);
    });
  }

  it('rtsp redirect: the relay refuses it, the victim sees no connection, the stream fails', async () => {
    const created = await request(server.url).post('/v1/streams').set(AUTH).send({ id: 'rtsp-redirect', source: `rtsp://127.0.0.2:${redirector.port}/cam` });
    assert.equal(created.status, 201, created.text);
    const error = await failedWith(server, 'rtsp-redirect');
    assert.equal(error.code, 'SOURCE_FORBIDDEN', JSON.stringify(error));
    assert.equal(rtspVictim.connections, 0);
  });

  it('dns rebinding: a name re-resolving to a refused address is refused at the next connection', async () => {
    const created = await request(server.url).post('/v1/streams').set(AUTH).send({ id: 'rebind', source: `http://rebind.test:${origin.port}/clip.mp4` });
    assert.equal(created.status, 201, created.text);
    const error = await failedWith(server, 'rebind');
    assert.equal(error.code, 'SOURCE_FORBIDDEN', JSON.stringify(error));
    assert.ok(lookups.filter((h) => h === 'rebind.test').length >= 3, 'resolved again for a later connection');
    assert.equal(rebindVictim.connections, 0);
  });

  it('a direct source on a refused address is refused at creation, however it is spelled', async () => {
    for (const source of [`http://127.0.0.1:${victim.port}/x.mp4`, `http://[::ffff:7f00:1]:${victim.port}/x.mp4`, `http://[::ffff:127.0.0.1]:${victim.port}/x.mp4`, `rtsp://0x7f000001:${rtspVictim.port}/x`]) {
      const res = await request(server.url).post('/v1/streams').set(AUTH).send({ source });
      assert.equal(res.status, 403, `${source}: ${res.text}`);
      assert.equal(res.body.error.code, 'SOURCE_FORBIDDEN');
    }
    assert.equal(victim.connections + rtspVictim.connections, 0);
  });

  it('uploads and files open only as plain containers: playlists are refused with 403, whatever the name', async () => {
    const secret = path.join(tempDir('vigil-secret-'), 'secret.ts');
    fs.writeFileSync(secret, Buffer.alloc(188 * 10, 0x47));
    const playlist = `#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n${secret}\n#EXT-X-ENDLIST\n`;
    const uploads: Array<[string, string | Buffer]> = [
      ['list.m3u8', playlist],
      ['cat.mp4', playlist],
      ['movie.mp4', `ffconcat version 1.0\nfile '${secret}'\n`],
      ['dash.mp4', '<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011"></MPD>'],
    ];
    const uploadsDir = path.join(server.dataDir, 'streams');
    for (const [name, body] of uploads) {
      const res = await request(server.url).post('/v1/streams').set(AUTH).attach('file', Buffer.from(body), { filename: name, contentType: 'video/mp4' });
      assert.equal(res.status, 403, `${name}: ${res.text}`);
      assert.equal(res.body.error.code, 'SOURCE_FORBIDDEN', name);
      assert.ok(!res.text.includes(server.dataDir) && !res.text.includes(secret), `${name}: no server path in ${res.text}`);
    }
    const left = fs.existsSync(uploadsDir) ? fs.readdirSync(uploadsDir, { recursive: true }).map(String).filter((f) => /video\//.test(f) && !f.endsWith('video')) : [];
    assert.deepEqual(left, [], 'refused uploads leave no file behind');
    // Server-side files (--allow-files): same rule.
    fs.writeFileSync(path.join(filesDir, 'cat.mp4'), playlist);
    fs.writeFileSync(path.join(filesDir, 'list.m3u8'), playlist);
    for (const name of ['cat.mp4', 'list.m3u8']) {
      const res = await request(server.url).post('/v1/streams').set(AUTH).send({ source: name });
      assert.equal(res.status, 403, `${name}: ${res.text}`);
      assert.equal(res.body.error.code, 'SOURCE_FORBIDDEN');
      assert.ok(!res.text.includes(filesDir), `no server path in ${res.text}`);
    }
  });
});

describe('credentials never reach a child process argv', () => {
  let server: TestServer;
  let rtsp: RtspServer | null = null;
  const password = 'pa55-wordXYZ-secret';

  before(async () => {
    server = await startTestServer({ manager: { policy: { allowNetworks: ['127.0.0.3/32'] } } });
  });
  after(async () => {
    await server?.close();
    await rtsp?.kill();
  });

  it('a credentialed RTSP camera ingests while no /proc/*/cmdline of ours holds the password', async (t) => {
    const python = requireRtsp(t);
    if (!python) return;
    const clips = await makeClips(30);
    rtsp = await startRtspServer(python, { file: path.join(clips, 'a.mp4'), address: '127.0.0.3', user: 'admin', password, auth: 'digest' });
    const source = rtsp.url.replace('rtsp://', `rtsp://admin:${encodeURIComponent(password)}@`);
    const created = await request(server.url).post('/v1/streams').set(AUTH).send({ id: 'cam', source, window: 4 });
    assert.equal(created.status, 201, created.text);
    const seen = new Set<number>();
    const cmdlines: string[] = [];
    await waitFor('frames to be encoded', async () => {
      for (const pid of descendants(process.pid)) {
        if (seen.has(pid)) continue;
        try {
          const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
          seen.add(pid);
          cmdlines.push(cmd);
        } catch {
          // exited in between
        }
      }
      const s = (await request(server.url).get('/v1/streams/cam').set(AUTH)).body;
      return (s.memory?.chunks ?? 0) >= 3 || s.state === 'failed' ? s : undefined;
    }, 90_000);
    const status = (await request(server.url).get('/v1/streams/cam').set(AUTH)).body;
    assert.notEqual(status.state, 'failed', JSON.stringify(status.error));
    const ffmpegs = cmdlines.filter((c) => /ff(mpeg|probe)/.test(c));
    assert.ok(ffmpegs.length > 0, 'saw the ffmpeg children');
    assert.ok(ffmpegs.every((c) => /rtsp:\/\/127\.0\.0\.1:\d+\//.test(c)), `ffmpeg reads the loopback relay: ${ffmpegs.join('\n')}`);
    for (const text of [...cmdlines, JSON.stringify(status), (await request(server.url).get('/metrics').set(AUTH)).text, server.logs.join('\n')]) {
      assert.ok(!text.includes(password) && !text.includes(encodeURIComponent(password)), `password found in: ${text.slice(0, 300)}`);
    }
    // Thumbnails carry no metadata that names the source.
    let thumbnails = 0;
    for (let chunk = 0; chunk < 6; chunk++) {
      const jpeg = await request(server.url).get(`/v1/streams/cam/frames/${chunk}.jpg`).set(AUTH).buffer(true).parse((res, done) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () => done(null, Buffer.concat(parts)));
      });
      if (jpeg.status !== 200) continue;
      thumbnails++;
      const bytes = jpeg.body as Buffer;
      assert.ok(!bytes.includes(password) && !bytes.includes('admin:') && !bytes.includes('rtsp://'), `thumbnail ${chunk} names the source`);
    }
    assert.ok(thumbnails > 0, 'saw thumbnails');
    await request(server.url).post('/v1/streams/cam/stop').set(AUTH).expect(200);
  });
});

/** PIDs of every process below `root` (children, grandchildren ...), from /proc. */
function descendants(root: number): number[] {
  const parent = new Map<number, number>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parent.set(Number(entry), ppid);
    } catch {
      // gone
    }
  }
  const out: number[] = [];
  for (const pid of parent.keys()) {
    for (let p = parent.get(pid); p !== undefined && p > 1; p = parent.get(p)) {
      if (p === root) {
        out.push(pid);
        break;
      }
    }
  }
  return out;
}

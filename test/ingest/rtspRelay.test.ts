/**
 * The loopback RTSP relay (ingest/net/rtspRelay.ts), with real processes: GStreamer's RTSP server
 * (test/fixtures/rtspServer.py) and real ffmpeg reading only `relay.url`, over TCP and UDP, with
 * basic and digest credentials that never appear in ffmpeg's argv; fake RTSP servers written here
 * for what a hostile camera does (redirects into the host's own network, UDP transport aimed at a
 * local port, garbage, oversized messages) and a "victim" on 127.0.0.1 that must see no connection.
 * DNS rebinding uses an injected resolver (OutboundPolicy's `lookup`): tests cannot run a DNS server here.
 * Only loopback addresses are used: 127.0.0.2 / 127.0.0.3 are "allowed origins", 127.0.0.1 the victim.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { locateFfmpeg, systemFfmpeg } from '../../ingest/ffmpegBinary.js';
import { OutboundPolicy } from '../../ingest/net/outboundPolicy.js';
import { RtspRelay } from '../../ingest/net/rtspRelay.js';
import { digestResponse, parseChallenges } from '../../ingest/net/auth.js';
import { header, RtspFramer, type RtspMessage, serialize } from '../../ingest/net/rtsp/framing.js';
import { requireRtsp, type RtspServer, startRtspServer } from '../fixtures/rtspServer.js';

const ffmpeg = systemFfmpeg() ?? locateFfmpeg();
const PASSWORD = 'pa55-Word-4271';
const ORIGIN = '127.0.0.2';
const OTHER_ORIGIN = '127.0.0.3';
const originOnly = () => new OutboundPolicy({ allowNetworks: [`${ORIGIN}/32`] });

let dir: string;
let clip: string;
const relays: RtspRelay[] = [];
const servers: RtspServer[] = [];
const closers: Array<() => Promise<void>> = [];
const children = new Set<ChildProcess>();

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-rtsp-relay-'));
  clip = path.join(dir, 'clip.mp4');
  execFileSync(ffmpeg.ffmpegPath, ['-hide_banner', '-loglevel', 'error', '-nostdin', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=10', '-t', '30', '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '10', '-pix_fmt', 'yuv420p', clip]);
});

after(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const relay of relays) await relay.dispose();
  for (const close of closers) await close();
  for (const s of servers) await s.kill();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function relayFor(upstream: string, policy: OutboundPolicy, display = upstream.replace(/\/\/[^@/]*@/, '//')): Promise<RtspRelay> {
  const relay = await RtspRelay.start({ upstream, display, policy, connectTimeoutMs: 3000, idleTimeoutMs: 10_000 });
  relays.push(relay);
  return relay;
}

async function gst(python: string, options: Parameters<typeof startRtspServer>[1] = {}): Promise<RtspServer> {
  const s = await startRtspServer(python, { file: clip, ...options });
  servers.push(s);
  return s;
}

interface FfmpegRun {
  code: number | null;
  stderr: string;
  frames: number;
  ms: number;
}

/** Real ffmpeg decoding `frames` frames of `url`; `whileRunning` gets its pid once started. */
function runFfmpeg(url: string, options: { transport?: 'tcp' | 'udp'; frames?: number; logLevel?: string; whileRunning?: (pid: number) => void } = {}): Promise<FfmpegRun> {
  const args = ['-hide_banner', '-nostdin', '-loglevel', options.logLevel ?? 'info', '-rtsp_transport', options.transport ?? 'tcp', `-${ffmpeg.caps.rtspSocketTimeoutOption}`, '5000000', '-i', url, '-frames:v', String(options.frames ?? 5), '-f', 'null', '-'];
  const started = Date.now();
  const child = spawn(ffmpeg.ffmpegPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(child);
  let stderr = '';
  let pidChecked = false;
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
    // Once it prints anything it is running with its final argv.
    if (!pidChecked && child.pid !== undefined) {
      pidChecked = true;
      options.whileRunning?.(child.pid);
    }
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 40_000);
  return new Promise((resolve) => {
    child.once('close', (code) => {
      clearTimeout(timer);
      children.delete(child);
      const counts = [...stderr.matchAll(/frame=\s*(\d+)/g)].map((m) => Number(m[1]));
      resolve({ code, stderr, frames: counts.at(-1) ?? 0, ms: Date.now() - started });
    });
  });
}

// ---- fake servers and a raw RTSP client -------------------------------------------------------

interface Fake {
  port: number;
  connections: number;
  requests: RtspMessage[];
  close(): Promise<void>;
}

type Reply = (status: string, headers?: Record<string, string>, body?: string) => void;

/** A TCP server on `host` that speaks just enough RTSP, or whatever `handle` writes. */
function fakeRtsp(host: string, handle: (request: RtspMessage, reply: Reply, socket: net.Socket) => void, port = 0): Promise<Fake> {
  const sockets = new Set<net.Socket>();
  const fake: Fake = { port: 0, connections: 0, requests: [], close: async () => {} };
  const server = net.createServer((socket) => {
    fake.connections++;
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    const framer = new RtspFramer({
      binary: () => {},
      error: () => socket.destroy(),
      message: (m) => {
        fake.requests.push(m);
        const reply: Reply = (status, headers = {}, body = '') => {
          const h = { CSeq: header(m, 'cseq') ?? '0', ...headers };
          socket.write(serialize({ startLine: `RTSP/1.0 ${status}`, headers: Object.entries(h), body: Buffer.from(body) }));
        };
        handle(m, reply, socket);
      },
    });
    socket.on('data', (d: Buffer) => framer.push(d));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      fake.port = (server.address() as net.AddressInfo).port;
      fake.close = () =>
        new Promise<void>((r) => {
          for (const s of sockets) s.destroy();
          server.close(() => r());
        });
      closers.push(fake.close);
      resolve(fake);
    });
  });
}

/** A TCP server on 127.0.0.1 that counts connections: what an SSRF would reach. */
function victim(port = 0): Promise<{ port: number; connections: () => number }> {
  let count = 0;
  const server = net.createServer((s) => {
    count++;
    s.destroy();
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      closers.push(() => new Promise((r) => server.close(() => r())));
      resolve({ port: (server.address() as net.AddressInfo).port, connections: () => count });
    });
  });
}

class RawClient {
  private readonly inbox: RtspMessage[] = [];
  private wake: (() => void) | null = null;
  private cseq = 0;
  closed = false;
  readonly closedPromise: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    const framer = new RtspFramer({
      binary: () => {},
      error: () => socket.destroy(),
      message: (m) => {
        this.inbox.push(m);
        this.wake?.();
      },
    });
    socket.on('data', (d: Buffer) => framer.push(d));
    socket.on('error', () => {});
    this.closedPromise = new Promise((r) =>
      socket.on('close', () => {
        this.closed = true;
        this.wake?.();
        r();
      }),
    );
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(new RawClient(s)));
      s.once('error', reject);
      closers.push(async () => void s.destroy());
    });
  }

  /** Sends a request; resolves with the answer, or null when the relay closed the connection instead. */
  async request(method: string, uri: string, headers: Record<string, string> = {}): Promise<RtspMessage | null> {
    this.socket.write(serialize({ startLine: `${method} ${uri} RTSP/1.0`, headers: Object.entries({ CSeq: String(++this.cseq), ...headers }), body: Buffer.alloc(0) }));
    const deadline = Date.now() + 10_000;
    while (this.inbox.length === 0 && !this.closed) {
      if (Date.now() > deadline) throw new Error(`no answer to ${method}`);
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 200);
      });
    }
    return this.inbox.shift() ?? null;
  }
}

const status = (m: RtspMessage | null) => (m ? Number(m.startLine.split(' ')[1]) : null);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- units ---------------------------------------------------------------------------------------

describe('RTSP framing and auth (units)', () => {
  it('passes interleaved frames through byte-exact however the stream is split, and parses text messages', () => {
    const frames = [Buffer.from([0x24, 0, 0, 3, 1, 2, 3]), Buffer.concat([Buffer.from([0x24, 1, 0x01, 0x00]), Buffer.alloc(256, 7)])];
    const text = Buffer.from('RTSP/1.0 200 OK\r\nCSeq: 3\r\nContent-Length: 5\r\n\r\nhello');
    const stream = Buffer.concat([frames[0]!, text, frames[1]!, Buffer.from('\r\n'), text]);
    for (const step of [1, 2, 3, 5, 7, 64, stream.length]) {
      const binary: Buffer[] = [];
      const messages: RtspMessage[] = [];
      const framer = new RtspFramer({ binary: (b) => binary.push(Buffer.from(b)), message: (m) => messages.push(m), error: (r) => assert.fail(r) });
      for (let i = 0; i < stream.length; i += step) framer.push(stream.subarray(i, i + step));
      assert.deepEqual(Buffer.concat(binary), Buffer.concat(frames), `split every ${step} bytes`);
      assert.equal(messages.length, 2);
      assert.equal(messages[1]!.body.toString(), 'hello');
      assert.equal(header(messages[0]!, 'cseq'), '3');
    }
  });

  it('refuses an oversized header block, an oversized body and garbage', () => {
    const errorOf = (input: Buffer) => {
      let reason: string | null = null;
      const framer = new RtspFramer({ binary: () => {}, message: () => {}, error: (r) => (reason = r) });
      for (let i = 0; i < input.length; i += 4096) framer.push(input.subarray(i, i + 4096));
      return reason;
    };
    assert.match(errorOf(Buffer.from(`RTSP/1.0 200 OK\r\n${'X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n'.repeat(1200)}`)) ?? '', /header block over/);
    assert.match(errorOf(Buffer.from('RTSP/1.0 200 OK\r\nContent-Length: 2000000\r\n\r\n')) ?? '', /Content-Length 2000000 over/);
    assert.match(errorOf(Buffer.from('HTTP/1.1 200 OK\r\n\r\n')) ?? '', /not an RTSP start line/);
    assert.match(errorOf(Buffer.from([0xff, 0x00, 0x13, 0x37, 0x0a])) ?? '', /not an RTSP start line/);
    assert.match(errorOf(Buffer.from('RTSP/1.0 200 OK\r\nno colon here\r\n\r\n')) ?? '', /malformed header/);
    assert.equal(errorOf(Buffer.from('RTSP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok')), null);
  });

  it('computes RFC 2617 digests (the Mufasa example, qop=auth) and parses several challenges', () => {
    const response = digestResponse({ username: 'Mufasa', password: 'Circle Of Life', realm: 'testrealm@host.com', nonce: 'dcd98b7102dd2f0e8b11d0f600bfb0c093', method: 'GET', uri: '/dir/index.html', qop: 'auth', nc: 1, cnonce: '0a4f113b' });
    assert.equal(response, '6629fae49393a05397450978507c4ef1');
    const challenges = parseChallenges(['Digest realm="cam, 1", nonce="abc", qop="auth,auth-int", Basic realm="x"', 'Basic realm="y"']);
    assert.deepEqual(challenges, [
      { scheme: 'digest', params: { realm: 'cam, 1', nonce: 'abc', qop: 'auth,auth-int' } },
      { scheme: 'basic', params: { realm: 'x' } },
      { scheme: 'basic', params: { realm: 'y' } },
    ]);
  });
});

// ---- with real ffmpeg and GStreamer ------------------------------------------------------------

// Side by side: each test has its own servers, relays and victim, and waits mostly on ffmpeg and the network.
describe('RTSP relay with real ffmpeg', { concurrency: true }, () => {
  for (const transport of ['tcp', 'udp'] as const) {
    it(`relays a real server to ffmpeg over ${transport.toUpperCase()}; ffmpeg sees only relay URLs`, async (t) => {
      const python = requireRtsp(t);
      if (!python) return;
      const s = await gst(python);
      const relay = await relayFor(s.url, OutboundPolicy.trusted);
      assert.match(relay.url, /^rtsp:\/\/127\.0\.0\.1:\d+\/stream$/);
      const run = await runFfmpeg(relay.url, { transport, logLevel: 'trace' });
      assert.equal(run.code, 0, run.stderr.slice(-2000));
      assert.equal(run.frames, 5);
      // Trace logs every request ffmpeg sent and every reply line it read: the upstream is in none.
      assert.match(run.stderr, new RegExp(`Content-Base: ${relay.url.replace(/\./g, '\\.')}/`));
      assert.ok(!run.stderr.includes(`:${s.port}`), 'the upstream port leaked to ffmpeg');
      assert.equal(relay.lastError, null);
      if (transport === 'udp') {
        assert.match(run.stderr, /server_port=\d+-\d+/);
        assert.ok(relay.stats.datagramsDown >= 20, JSON.stringify(relay.stats));
        assert.ok(relay.stats.bytesDown < 20_000, 'media did not come over TCP');
      } else assert.ok(relay.stats.bytesDown > 20_000, JSON.stringify(relay.stats));
      await relay.dispose();
      assert.equal(relay.activeSessions, 0);
    });
  }

  for (const auth of ['basic', 'digest'] as const) {
    it(`${auth} credentials: the relay authenticates, ffmpeg's argv has no password; a wrong one is SOURCE_AUTH`, async (t) => {
      const python = requireRtsp(t);
      if (!python) return;
      const s = await gst(python, { user: 'admin', password: PASSWORD, auth });
      const withCredentials = (password: string) => {
        const u = new URL(s.url);
        u.username = 'admin';
        u.password = encodeURIComponent(password);
        return u.href;
      };
      const relay = await relayFor(withCredentials(PASSWORD), OutboundPolicy.trusted, s.url);
      assert.ok(!relay.url.includes(PASSWORD) && !relay.url.includes('admin'));
      let cmdline = '';
      const run = await runFfmpeg(relay.url, { whileRunning: (pid) => (cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8')) });
      assert.equal(run.code, 0, run.stderr.slice(-2000));
      assert.equal(run.frames, 5);
      assert.ok(cmdline.includes(relay.url), `read the right process: ${cmdline}`);
      assert.ok(!cmdline.includes(PASSWORD) && !cmdline.includes('admin'), cmdline);
      assert.equal(relay.lastError, null);

      const wrong = await relayFor(withCredentials('not-the-password'), OutboundPolicy.trusted, s.url);
      const failed = await runFfmpeg(wrong.url);
      assert.notEqual(failed.code, 0);
      assert.match(failed.stderr, /401/);
      assert.equal(wrong.lastError?.code, 'SOURCE_AUTH');
      assert.ok(!wrong.lastError.message.includes('not-the-password'), wrong.lastError.message);

      const none = await relayFor(s.url, OutboundPolicy.trusted);
      assert.notEqual((await runFfmpeg(none.url)).code, 0);
      assert.equal(none.lastError?.code, 'SOURCE_AUTH');
    });
  }

  it('a redirect to a refused address is not followed: the victim sees no connection, SOURCE_FORBIDDEN', async () => {
    const v = await victim();
    const origin = await fakeRtsp(ORIGIN, (_m, reply) => reply('302 Moved', { Location: `rtsp://127.0.0.1:${v.port}/x` }));
    const relay = await relayFor(`rtsp://${ORIGIN}:${origin.port}/cam`, originOnly());
    const run = await runFfmpeg(relay.url);
    assert.notEqual(run.code, 0);
    assert.ok(origin.connections >= 1, 'the origin was asked');
    assert.equal(v.connections(), 0, 'the victim was reached');
    assert.equal(relay.lastError?.code, 'SOURCE_FORBIDDEN');
    assert.match(relay.lastError.message, /127\.0\.0\.1/);
    assert.ok(!run.stderr.includes(String(v.port)), 'the Location reached ffmpeg');
  });

  it('a redirect to an allowed origin is followed (path included) and ffmpeg decodes', async (t) => {
    const python = requireRtsp(t);
    if (!python) return;
    const s = await gst(python, { address: OTHER_ORIGIN });
    const origin = await fakeRtsp(ORIGIN, (_m, reply) => reply('302 Moved Temporarily', { Location: s.url }));
    const relay = await relayFor(`rtsp://${ORIGIN}:${origin.port}/cam`, new OutboundPolicy({ allowNetworks: [`${ORIGIN}/32`, `${OTHER_ORIGIN}/32`] }));
    const run = await runFfmpeg(relay.url, { logLevel: 'trace' });
    assert.equal(run.code, 0, run.stderr.slice(-2000));
    assert.equal(run.frames, 5);
    assert.ok(origin.connections >= 1);
    assert.ok(relay.stats.upstreamConnections >= 2, JSON.stringify(relay.stats));
    // (The SDP's o= line names the server's address; no URL with its port reaches ffmpeg.)
    assert.ok(!run.stderr.includes(`:${s.port}`), 'ffmpeg saw the redirect target');
    assert.match(run.stderr, /RTP-Info: url=rtsp:\/\/127\.0\.0\.1:\d+\/stream\/stream=0/);
    assert.equal(relay.lastError, null);
  });

  it('an upstream host the policy refuses is never connected to: SOURCE_FORBIDDEN, ffmpeg fails', async () => {
    const v = await victim();
    const relay = await relayFor(`rtsp://127.0.0.1:${v.port}/x`, originOnly());
    const run = await runFfmpeg(relay.url);
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /403/);
    assert.equal(v.connections(), 0);
    assert.equal(relay.lastError?.code, 'SOURCE_FORBIDDEN');
  });
});

// ---- hostile upstreams with a raw client ----------------------------------------------------------

describe('RTSP relay against hostile upstreams', () => {
  it('DNS rebinding (injected resolver): the second connection resolves to 127.0.0.1 and is refused', async () => {
    const origin = await fakeRtsp(ORIGIN, (_m, reply) => reply('200 OK', { Public: 'OPTIONS, DESCRIBE' }));
    const v = await victim(origin.port).catch(() => null);
    assert.ok(v, 'could not bind the victim on the origin port');
    let lookups = 0;
    // An injected resolver: the camera's name points at the allowed origin first, then at loopback.
    const policy = new OutboundPolicy({ allowNetworks: [`${ORIGIN}/32`], lookup: async () => (++lookups === 1 ? [ORIGIN] : ['127.0.0.1']) });
    const relay = await relayFor(`rtsp://camera.invalid:${origin.port}/live`, policy);
    const first = await RawClient.connect(Number(new URL(relay.url).port));
    assert.equal(status(await first.request('OPTIONS', relay.url)), 200);
    assert.equal(origin.requests[0]!.startLine, `OPTIONS rtsp://camera.invalid:${origin.port}/live RTSP/1.0`);
    const second = await RawClient.connect(Number(new URL(relay.url).port));
    assert.equal(status(await second.request('OPTIONS', relay.url)), 403);
    await second.closedPromise;
    assert.equal(lookups, 2);
    assert.equal(v.connections(), 0);
    assert.equal(relay.lastError?.code, 'SOURCE_FORBIDDEN');
  });

  for (const [name, answer] of [
    ['garbage', Buffer.from('\u0000\u00ff\u0013garbage garbage\n\n')],
    ['an oversized header block', Buffer.from(`RTSP/1.0 200 OK\r\nCSeq: 1\r\n${'X-Pad: 0123456789abcdef0123456789abcdef\r\n'.repeat(2000)}`)],
    ['an oversized Content-Length', Buffer.from('RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: 99999999\r\n\r\n')],
  ] as const) {
    it(`${name} from upstream closes the connection with SOURCE_FAILED; the relay keeps working`, async () => {
      let bad = true;
      const origin = await fakeRtsp(ORIGIN, (_m, reply, socket) => (bad ? socket.write(answer) : reply('200 OK')));
      const relay = await relayFor(`rtsp://${ORIGIN}:${origin.port}/cam`, originOnly());
      const port = Number(new URL(relay.url).port);
      const client = await RawClient.connect(port);
      assert.equal(await client.request('OPTIONS', relay.url), null, 'closed, not answered');
      assert.equal(relay.lastError?.code, 'SOURCE_FAILED');
      assert.match(relay.lastError.message, /malformed RTSP/);
      bad = false;
      const again = await RawClient.connect(port);
      assert.equal(status(await again.request('OPTIONS', relay.url)), 200);
    });
  }

  it('real ffmpeg against garbage fails cleanly', async () => {
    const origin = await fakeRtsp(ORIGIN, (_m, _reply, socket) => socket.write('this is not RTSP at all\r\n\r\n'));
    const relay = await relayFor(`rtsp://${ORIGIN}:${origin.port}/cam`, originOnly());
    const run = await runFfmpeg(relay.url);
    assert.notEqual(run.code, 0);
    assert.equal(relay.lastError?.code, 'SOURCE_FAILED');
  });

  it('digest with qop=auth: the relay answers the challenge and counts nc on later requests', async () => {
    const nonce = 'n0nce-1234';
    const seen: Array<Record<string, string>> = [];
    const origin = await fakeRtsp(ORIGIN, (m, reply) => {
      const authorization = header(m, 'authorization');
      if (!authorization) return reply('401 Unauthorized', { 'WWW-Authenticate': `Basic realm="cam", Digest realm="cam", nonce="${nonce}", qop="auth", algorithm=MD5, opaque="op"` });
      const params = parseChallenges([authorization])[0]!.params;
      seen.push(params);
      const [method, uri] = m.startLine.split(' ') as [string, string];
      const expected = digestResponse({ username: 'admin', password: PASSWORD, realm: 'cam', nonce, method, uri, qop: 'auth', nc: parseInt(params.nc!, 16), cnonce: params.cnonce! });
      reply(params.response === expected && params.uri === uri && params.opaque === 'op' ? '200 OK' : '401 Unauthorized');
    });
    const relay = await relayFor(`rtsp://admin:${PASSWORD}@${ORIGIN}:${origin.port}/cam`, originOnly(), `rtsp://${ORIGIN}:${origin.port}/cam`);
    const client = await RawClient.connect(Number(new URL(relay.url).port));
    assert.equal(status(await client.request('OPTIONS', relay.url)), 200);
    const describe = await client.request('DESCRIBE', relay.url, { Accept: 'application/sdp' });
    assert.equal(status(describe), 200);
    assert.equal(header(describe!, 'cseq'), '2', 'the client sees its own CSeq');
    assert.deepEqual(seen.map((p) => p.nc), ['00000001', '00000002']);
    assert.ok(seen.every((p) => p.qop === 'auth' && p.username === 'admin'));
    assert.ok(origin.requests.every((m) => !m.startLine.includes(PASSWORD)));
    assert.equal(relay.lastError, null);
  });

  it('UDP: the server cannot aim datagrams; only its checked address and ports are relayed', async () => {
    // The "camera" announces server ports V, V+1 and source=127.0.0.1 (the victim): ffmpeg must be
    // told relay ports instead, and nothing may go to 127.0.0.1:V.
    const serverRtp = dgram.createSocket('udp4');
    const serverRtcp = dgram.createSocket('udp4');
    await new Promise<void>((r) => serverRtp.bind(0, ORIGIN, () => r()));
    const V = serverRtp.address().port;
    await new Promise<void>((r, j) => {
      serverRtcp.once('error', j);
      serverRtcp.bind(V + 1, ORIGIN, () => r());
    });
    const victimUdp = dgram.createSocket('udp4');
    const victimGot: Buffer[] = [];
    victimUdp.on('message', (m) => victimGot.push(m));
    await new Promise<void>((r, j) => {
      victimUdp.once('error', j);
      victimUdp.bind(V, '127.0.0.1', () => r());
    });
    const ffmpegSide = [dgram.createSocket('udp4'), dgram.createSocket('udp4')] as const;
    await new Promise<void>((r) => ffmpegSide[0].bind(0, '127.0.0.1', () => r()));
    const A = ffmpegSide[0].address().port;
    await new Promise<void>((r, j) => {
      ffmpegSide[1].once('error', j);
      ffmpegSide[1].bind(A + 1, '127.0.0.1', () => r());
    });
    const stranger = dgram.createSocket('udp4');
    await new Promise<void>((r) => stranger.bind(0, '127.0.0.1', () => r()));
    const strangerOnOrigin = dgram.createSocket('udp4');
    await new Promise<void>((r) => strangerOnOrigin.bind(0, ORIGIN, () => r()));
    closers.push(async () => [serverRtp, serverRtcp, victimUdp, ...ffmpegSide, stranger, strangerOnOrigin].forEach((s) => s.close()));
    const serverGotRtcp: Buffer[] = [];
    serverRtcp.on('message', (m) => serverGotRtcp.push(m));
    const clientGot: Buffer[] = [];
    ffmpegSide[0].on('message', (m) => clientGot.push(m));

    let relayPorts: [number, number] | null = null;
    const origin = await fakeRtsp(ORIGIN, (m, reply) => {
      const transport = header(m, 'transport') ?? '';
      const cp = /client_port=(\d+)-(\d+)/.exec(transport);
      if (cp) relayPorts = [Number(cp[1]), Number(cp[2])];
      reply('200 OK', { Session: '12345', Transport: `RTP/AVP;unicast;client_port=${cp?.[1]}-${cp?.[2]};server_port=${V}-${V + 1};source=127.0.0.1;destination=127.0.0.1;ssrc=1234ABCD` });
    });
    const relay = await relayFor(`rtsp://${ORIGIN}:${origin.port}/cam`, originOnly());
    const client = await RawClient.connect(Number(new URL(relay.url).port));
    assert.equal(status(await client.request('SETUP', `${relay.url}/track1`, { Transport: 'RTP/AVP/UDP;unicast;client_port=9000-9001;multicast' })), 461, 'multicast refused');
    const setup = await client.request('SETUP', `${relay.url}/track1`, { Transport: `RTP/AVP/UDP;unicast;client_port=${A}-${A + 1}` });
    assert.equal(status(setup), 200);
    const transport = header(setup!, 'transport')!;
    const sp = /server_port=(\d+)-(\d+)/.exec(transport);
    assert.ok(sp && Number(sp[1]) !== V && Number(sp[2]) === Number(sp[1]) + 1, transport);
    assert.ok(!/source=|destination=/.test(transport), transport);
    assert.match(transport, new RegExp(`client_port=${A}-${A + 1}`));
    assert.match(transport, /ssrc=1234ABCD/);
    const ports = relayPorts as [number, number] | null;
    assert.ok(ports && ports[0] !== A, 'the upstream was given relay-owned ports');
    const [upRtp] = ports;

    serverRtp.send('media-1', upRtp, '127.0.0.1'); // from the checked address and announced port: relayed
    stranger.send('evil-1', upRtp, '127.0.0.1'); // another host: dropped
    strangerOnOrigin.send('evil-2', upRtp, '127.0.0.1'); // the right host, another port: dropped
    ffmpegSide[1].send('rtcp-rr', Number(sp![2]), '127.0.0.1'); // ffmpeg's RTCP goes to the server's checked address
    stranger.send('evil-3', Number(sp![1]), '127.0.0.1'); // not from ffmpeg's client port: dropped
    await sleep(300);
    assert.deepEqual(clientGot.map(String), ['media-1']);
    assert.deepEqual(serverGotRtcp.map(String), ['rtcp-rr']);
    assert.equal(victimGot.length, 0);
    assert.equal(relay.stats.datagramsDropped, 3);
    await relay.dispose();
    // After dispose the relay's ports are closed: nothing more is forwarded.
    serverRtp.send('media-2', upRtp, '127.0.0.1');
    await sleep(200);
    assert.deepEqual(clientGot.map(String), ['media-1']);
  });

  it('redirect chains stop at 5; dispose() closes every connection and is idempotent', async () => {
    let hops = 0;
    const origin = await fakeRtsp(ORIGIN, (_m, reply, socket) => {
      hops++;
      reply('301 Moved', { Location: `rtsp://${ORIGIN}:${(socket.address() as net.AddressInfo).port}/hop${hops}` });
    });
    const relay = await relayFor(`rtsp://${ORIGIN}:${origin.port}/cam`, originOnly());
    const client = await RawClient.connect(Number(new URL(relay.url).port));
    assert.equal(status(await client.request('OPTIONS', relay.url)), 502);
    assert.equal(hops, 6);
    assert.equal(relay.lastError?.code, 'SOURCE_FAILED');
    assert.match(relay.lastError.message, /more than 5/);

    const quiet = await fakeRtsp(ORIGIN, (_m, reply) => reply('200 OK'));
    const relay2 = await relayFor(`rtsp://${ORIGIN}:${quiet.port}/cam`, originOnly());
    const c = await RawClient.connect(Number(new URL(relay2.url).port));
    assert.equal(status(await c.request('OPTIONS', relay2.url)), 200);
    assert.equal(relay2.activeSessions, 1);
    await Promise.all([relay2.dispose(), relay2.dispose()]);
    await c.closedPromise;
    assert.equal(relay2.activeSessions, 0);
    await assert.rejects(RawClient.connect(Number(new URL(relay2.url).port)));
  });
});

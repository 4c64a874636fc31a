/**
 * Routing stream-bound API calls to the stream's owner node (api/clusterProxy.ts, issue 18). Three
 * small express apps on 127.0.0.1 stand for the nodes: n1 is the node a client calls (the proxy in
 * front of local stand-in routes), n2 owns streams (its handlers answer JSON, an SSE stream sent in
 * pieces, a JPEG, a slow body, a hung call; it runs the proxy too), n3 is a peer for listings. The
 * input is a static ClusterRouting table, which is what a node gets from NATS (leases and the node
 * registry); here it is fixed so each routing decision is known. Real HTTP on loopback throughout,
 * through the real OutboundPolicy. Also prints the latency a forwarded GET adds over a direct one.
 * Last, a real Vigil server (probe-random-tiny) in cluster mode (AppOptions.cluster): its own routes
 * behind the proxy, with n2 as its peer and owner.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import express from 'express';
import sharp from 'sharp';
import { createApp } from '../../api/app.js';
import { clusterProxy, type ClusterProxy } from '../../api/clusterProxy.js';
import { errorHandler, notFound } from '../../api/errors.js';
import { OutboundPolicy } from '../../ingest/net/outboundPolicy.js';
import { type ClusterRouting, FORWARDED_HEADER, type StreamRoute } from '../../src/cluster/streamRoutes.js';
import { freePort } from '../helpers/freePort.js';
import { listenLoopback } from '../helpers/loopbackServer.js';
import { AUTH, disposeSharedModel, startTestServer, type TestServer, TOKEN } from './helpers.js';

const CLIENT_AUTH = 'Bearer proxy-test-secret-0123456789abcdef';
/** Loopback nodes: allowed by name (allowNetworks), as an operator allows a cluster's network. */
const LOOPBACK = new OutboundPolicy({ allowNetworks: ['127.0.0.1/32'] });

class StaticRouting implements ClusterRouting {
  constructor(
    readonly nodeId: string,
    private readonly table: Record<string, StreamRoute>,
    private readonly peerList: Array<{ nodeId: string; url: string }>,
    private readonly placement: StreamRoute,
    readonly outbound: OutboundPolicy,
  ) {}
  route(streamId: string): Promise<StreamRoute> {
    // What a node's routing does when it cannot read the cluster's state.
    if (streamId === 'no-state') return Promise.reject(new Error('NATS connection lost'));
    return Promise.resolve(this.table[streamId] ?? { kind: 'local' });
  }
  placeNew(): Promise<StreamRoute> {
    return Promise.resolve(this.placement);
  }
  peers(): Promise<Array<{ nodeId: string; url: string }>> {
    return Promise.resolve(this.peerList);
  }
}

interface Alert {
  id: string;
  stream: string;
  wallTime: number;
  t: number;
}

/** What the owner saw, for the assertions. */
interface Probe {
  connections: number;
  /** SSE: resolves event i's acknowledgement (the client got it). */
  sseAcks: Array<() => void>;
  sseWaitedOut: boolean;
  /** Resolves when a slow or hung response was closed before it finished. */
  cutShort: Map<string, () => void>;
}

interface TestNode {
  id: string;
  url: string;
  probe: Probe;
  logs: string[];
  close(): Promise<void>;
}

const sha = (bytes: Buffer | string) => createHash('sha256').update(bytes).digest('hex');

/** A node: the proxy (when routed) in front of stand-ins for Vigil's routes, and Vigil's error handler. */
async function startNode(id: string, options: { routing?: (url: string) => ClusterRouting; streams: string[]; alerts?: Alert[]; jpeg?: Buffer; timeoutMs?: number }): Promise<TestNode> {
  const probe: Probe = { connections: 0, sseAcks: [], sseWaitedOut: false, cutShort: new Map() };
  const logs: string[] = [];
  const log = (line: string) => logs.push(line);
  const app = express();
  const server = http.createServer(app);
  server.on('connection', () => probe.connections++);
  const listening = await listenLoopback(server, '127.0.0.1');
  const url = `http://127.0.0.1:${listening.port}`;
  let proxy: ClusterProxy | null = null;
  const v1 = express.Router();
  if (options.routing) {
    proxy = clusterProxy(options.routing(url), { log, timeoutMs: options.timeoutMs ?? 5000, listTimeoutMs: 2000 });
    v1.use(proxy);
  }
  const whoAnswered = (req: express.Request) => ({ node: id, forwardedBy: req.get(FORWARDED_HEADER) ?? null, authorization: req.get('authorization') ?? null });
  v1.get('/streams', (_req, res) => {
    res.json({ streams: options.streams.map((s) => ({ id: s, node: id })) });
  });
  v1.get('/models', (_req, res) => {
    res.json({ object: 'list', data: options.streams.map((s) => ({ id: s, object: 'model' })) });
  });
  v1.get('/alerts', (req, res) => {
    const all = (options.alerts ?? []).filter((a) => req.query.stream === undefined || a.stream === req.query.stream).sort((a, b) => a.wallTime - b.wallTime);
    const limit = Number(req.query.limit ?? 100);
    const alerts = req.query.since !== undefined ? all.slice(0, limit) : all.slice(Math.max(0, all.length - limit));
    res.json({ alerts, truncated: alerts.length < all.length, node: id });
  });
  v1.post('/streams', express.json(), (req, res) => {
    const body = req.body as { id: string };
    res.status(201).location(`/v1/streams/${body.id}`).json({ id: body.id, ...whoAnswered(req) });
  });
  v1.get('/streams/:id', (req, res) => {
    if (req.params.id !== 'hang') return void res.json({ id: req.params.id, ...whoAnswered(req) });
    // Accepts the call and never answers: the proxy's headers timeout must end it.
    res.on('close', () => probe.cutShort.get('hang')?.());
  });
  v1.post('/streams/:id/questions', express.raw({ type: () => true, limit: '4mb' }), (req, res) => {
    res.json({ sha256: sha(req.body as Buffer), bytes: (req.body as Buffer).length, ...whoAnswered(req) });
  });
  const raw = new WeakMap<express.Request, Buffer>();
  v1.post('/chat/completions', express.json({ verify: (req, _res, buf) => void raw.set(req as express.Request, buf) }), (req, res) => {
    const bytes = raw.get(req);
    res.json({ model: (req.body as { model: string }).model, sha256: bytes ? sha(bytes) : null, ...whoAnswered(req) });
  });
  v1.post('/streams/:id/summaries', async (req, res) => {
    res.status(200).setHeader('content-type', 'text/event-stream; charset=utf-8');
    res.flushHeaders();
    for (let i = 0; i < 3; i++) {
      const acked = new Promise<boolean>((resolve) => {
        probe.sseAcks[i] = () => resolve(true);
        setTimeout(() => resolve(false), 3000).unref();
      });
      res.write(`event: piece\ndata: ${JSON.stringify({ i, node: id })}\n\n`);
      // The next piece only once the client has this one: a proxy that buffered would stall here.
      if (!(await acked)) probe.sseWaitedOut = true;
    }
    res.end();
  });
  v1.get('/streams/:id/timeline', (_req, res) => {
    res.status(200).type('text/plain');
    res.write('first part of a slow body\n');
    res.on('close', () => {
      if (!res.writableFinished) probe.cutShort.get('slow')?.();
    });
  });
  v1.get('/streams/:id/frames/:chunk.jpg', (_req, res) => {
    res.type('image/jpeg').send(options.jpeg);
  });
  app.use('/v1', v1);
  app.use(notFound);
  app.use(errorHandler(log));
  return {
    id,
    url,
    probe,
    logs,
    close: async () => {
      proxy?.dispose();
      await listening.close();
    },
  };
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  json<T = Record<string, unknown>>(): T;
}

const keepAlive = new http.Agent({ keepAlive: true });

/** One HTTP call; `chunks` are written one by one (chunked transfer, no content-length). */
function call(url: string, options: { method?: string; headers?: Record<string, string>; body?: Buffer | string; chunks?: Buffer[] } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: options.method ?? 'GET', headers: { authorization: CLIENT_AUTH, ...options.headers }, agent: keepAlive }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const body = Buffer.concat(parts);
        resolve({ status: res.statusCode!, headers: res.headers, body, json: <T>() => JSON.parse(body.toString('utf8')) as T });
      });
    });
    req.on('error', reject);
    for (const chunk of options.chunks ?? []) req.write(chunk);
    req.end(options.body);
  });
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)))]).finally(() => clearTimeout(timer));
}

describe('cluster routing: stream-bound calls go to the owner node', () => {
  let n1: TestNode;
  let n2: TestNode;
  let n3: TestNode;
  let strict: TestNode;
  let jpeg: Buffer;
  const alerts = (stream: string, ...times: number[]): Alert[] => times.map((wallTime) => ({ id: `${stream}-${wallTime}`, stream, wallTime, t: wallTime }));

  before(async () => {
    jpeg = await sharp({ create: { width: 16, height: 16, channels: 3, background: { r: 200, g: 30, b: 30 } } }).jpeg().toBuffer();
    const deadPort = await freePort();
    const dead = `http://127.0.0.1:${deadPort}`;
    n3 = await startNode('n3', { streams: ['b-3'], alerts: alerts('b-3', 3) });
    let n1Url = '';
    // n2's table wrongly says 'loop' lives on n1: only the loop guard stops a ping-pong.
    n2 = await startNode('n2', {
      streams: ['cam-b'],
      alerts: alerts('cam-b', 2, 6),
      jpeg,
      routing: () => new StaticRouting('n2', { loop: { kind: 'remote', nodeId: 'n1', url: n1Url } }, [], { kind: 'local' }, LOOPBACK),
    });
    const onN2 = (): StreamRoute => ({ kind: 'remote', nodeId: 'n2', url: n2.url });
    n1 = await startNode('n1', {
      streams: ['cam-a', 'zz'],
      alerts: alerts('cam-a', 1, 5),
      timeoutMs: 800,
      routing: () =>
        new StaticRouting(
          'n1',
          { 'cam-b': onN2(), hang: onN2(), loop: onN2(), 'odd id': onN2(), moving: { kind: 'moving', retryAfterS: 3 }, down: { kind: 'remote', nodeId: 'n9', url: dead } },
          [
            { nodeId: 'n2', url: n2.url },
            { nodeId: 'n3', url: n3.url },
            { nodeId: 'n4', url: dead },
          ],
          onN2(),
          LOOPBACK,
        ),
    });
    n1Url = n1.url;
    // A node whose URL policy allows no private address: loopback owners are refused.
    strict = await startNode('n1-strict', { streams: [], routing: () => new StaticRouting('n1-strict', { 'cam-b': onN2() }, [], { kind: 'local' }, new OutboundPolicy()) });
  });

  after(async () => {
    keepAlive.destroy();
    await Promise.all([n1, n2, n3, strict].filter(Boolean).map((n) => n.close()));
  });

  it('forwards a GET with its credentials and the loop guard; the answer names the owner', async () => {
    const res = await call(`${n1.url}/v1/streams/cam-b`);
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-vigil-node'], 'n2');
    assert.deepEqual(res.json(), { id: 'cam-b', node: 'n2', forwardedBy: 'n1', authorization: CLIENT_AUTH });
    // A percent-encoded id is routed by its decoded value and forwarded as sent.
    const odd = await call(`${n1.url}/v1/streams/odd%20id`);
    assert.equal(odd.json().node, 'n2');
    assert.equal(odd.json().id, 'odd id');
    // The stream's own alerts go to its owner too.
    const owned = await call(`${n1.url}/v1/alerts?stream=cam-b`);
    assert.equal(owned.headers['x-vigil-node'], 'n2');
    assert.deepEqual(
      owned.json<{ alerts: Alert[] }>().alerts.map((a) => a.id),
      ['cam-b-2', 'cam-b-6'],
    );
    // A stream this node owns (or nobody knows) is answered here.
    const local = await call(`${n1.url}/v1/streams/cam-a`);
    assert.equal(local.json().node, 'n1');
    assert.equal(local.headers['x-vigil-node'], undefined);
  });

  it('a forwarded POST body arrives byte-identical (chunked upload included)', async () => {
    const body = randomBytes(300_000);
    const sized = await call(`${n1.url}/v1/streams/cam-b/questions`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body });
    assert.deepEqual(sized.json(), { sha256: sha(body), bytes: body.length, node: 'n2', forwardedBy: 'n1', authorization: CLIENT_AUTH });
    const chunked = await call(`${n1.url}/v1/streams/cam-b/questions`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, chunks: [body.subarray(0, 1000), body.subarray(1000, 200_000), body.subarray(200_000)] });
    assert.equal(chunked.json().sha256, sha(body));
  });

  it('chat completions are routed by the body\'s model, forwarded byte-identical, or parsed for the local route', async () => {
    const text = '{ "model" : "cam-b",\n  "messages": [{"role": "user", "content": "what color?  "}] }';
    const remote = await call(`${n1.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: text });
    assert.equal(remote.headers['x-vigil-node'], 'n2');
    assert.deepEqual(remote.json(), { model: 'cam-b', sha256: sha(text), node: 'n2', forwardedBy: 'n1', authorization: CLIENT_AUTH });
    // Local: the route's own body parser finds the body already read and uses the parsed one.
    const local = await call(`${n1.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: text.replace('cam-b', 'cam-a') });
    assert.equal(local.status, 200);
    assert.equal(local.json().model, 'cam-a');
    assert.equal(local.json().node, 'n1');
    const bad = await call(`${n1.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model": "cam-b",' });
    assert.equal(bad.status, 400);
    assert.equal(bad.json<{ error: { code: string } }>().error.code, 'BAD_INPUT');
    const big = await call(`${n1.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'cam-b', pad: 'x'.repeat(70_000) }) });
    assert.equal(big.status, 413);
  });

  it('SSE events arrive one by one before the owner ends the stream', async () => {
    const got: Array<{ i: number; node: string }> = [];
    const headers = await withTimeout(
      new Promise<http.IncomingHttpHeaders>((resolve, reject) => {
        const req = http.request(`${n1.url}/v1/streams/cam-b/summaries`, { method: 'POST', headers: { authorization: CLIENT_AUTH, accept: 'text/event-stream' } }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (piece: string) => {
            text += piece;
            for (let end = text.indexOf('\n\n'); end >= 0; end = text.indexOf('\n\n')) {
              const data = /^data: (.*)$/m.exec(text.slice(0, end))?.[1];
              text = text.slice(end + 2);
              if (data === undefined) continue;
              const event = JSON.parse(data) as { i: number; node: string };
              got.push(event);
              // Tell the owner this event arrived: only then does it send the next one.
              n2.probe.sseAcks[event.i]?.();
            }
          });
          res.on('end', () => resolve(res.headers));
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end();
      }),
      8000,
      'the SSE stream',
    );
    assert.match(String(headers['content-type']), /^text\/event-stream/);
    assert.equal(headers['x-vigil-node'], 'n2');
    assert.deepEqual(got, [0, 1, 2].map((i) => ({ i, node: 'n2' })));
    assert.equal(n2.probe.sseWaitedOut, false, 'each event reached the client while the owner waited for it');
  });

  it('a JPEG comes back byte-identical with its type', async () => {
    const res = await call(`${n1.url}/v1/streams/cam-b/frames/7.jpg`);
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'image/jpeg');
    assert.ok(res.body.equals(jpeg));
  });

  it('a client that leaves aborts the call to the owner', async () => {
    const cut = new Promise<void>((resolve) => n2.probe.cutShort.set('slow', resolve));
    await new Promise<void>((resolve, reject) => {
      const req = http.get(`${n1.url}/v1/streams/cam-b/timeline`, { headers: { authorization: CLIENT_AUTH } }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', (error: NodeJS.ErrnoException) => (error.code === 'ECONNRESET' ? undefined : reject(error)));
    });
    await withTimeout(cut, 3000, "the owner's response closing");
  });

  it('loop guard: a forwarded call is answered where it lands, never forwarded again', async () => {
    // n1 sends 'loop' to n2, whose table sends it back to n1: n2 answers it itself.
    const res = await call(`${n1.url}/v1/streams/loop`);
    assert.deepEqual(res.json(), { id: 'loop', node: 'n2', forwardedBy: 'n1', authorization: CLIENT_AUTH });
    // A call carrying the header is answered locally even for a stream owned elsewhere.
    const here = await call(`${n1.url}/v1/streams/cam-b`, { headers: { [FORWARDED_HEADER]: 'n7' } });
    assert.equal(here.json().node, 'n1');
  });

  it('owner down, moving, hung before headers, or routing unknown: 503 STREAM_UNAVAILABLE naming the node, no credentials', async () => {
    const down = await call(`${n1.url}/v1/streams/down`);
    assert.equal(down.status, 503);
    const error = down.json<{ error: { code: string; message: string } }>().error;
    assert.equal(error.code, 'STREAM_UNAVAILABLE');
    assert.match(error.message, /stream 'down' is served by node 'n9', which cannot be reached now/);
    assert.ok(down.headers['retry-after']);

    const moving = await call(`${n1.url}/v1/streams/moving/questions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"question":"q"}' });
    assert.equal(moving.status, 503);
    assert.equal(moving.headers['retry-after'], '3');
    assert.deepEqual(moving.json(), { error: { code: 'STREAM_UNAVAILABLE', message: "stream 'moving' is moving to another node (failover); retry in 3 s" } });

    const unknown = await call(`${n1.url}/v1/streams/no-state`);
    assert.equal(unknown.status, 503);
    assert.match(unknown.json<{ error: { message: string } }>().error.message, /^cannot tell which node serves stream 'no-state' now/);

    const closed = new Promise<void>((resolve) => n2.probe.cutShort.set('hang', resolve));
    const started = performance.now();
    const hung = await call(`${n1.url}/v1/streams/hang`);
    assert.equal(hung.status, 503);
    assert.match(hung.json<{ error: { message: string } }>().error.message, /node 'n2', which did not answer in time/);
    assert.ok(performance.now() - started < 3000);
    await withTimeout(closed, 3000, 'the hung call closed at the owner');
  });

  it("the URL policy's refusal: 503 and no connection made", async () => {
    const before = n2.probe.connections;
    const res = await call(`${strict.url}/v1/streams/cam-b`);
    assert.equal(res.status, 503);
    assert.match(res.json<{ error: { message: string } }>().error.message, /stream 'cam-b' is served by node 'n2', which this node may not connect to: the server's URL policy refuses its address/);
    assert.equal(n2.probe.connections, before, 'nothing dialled');
  });

  it('listings merge every node; a dead peer is left out and named', async () => {
    const streams = await call(`${n1.url}/v1/streams`);
    assert.equal(streams.status, 200);
    assert.deepEqual(
      streams.json<{ streams: Array<{ id: string; node: string }> }>().streams,
      [
        { id: 'b-3', node: 'n3' },
        { id: 'cam-a', node: 'n1' },
        { id: 'cam-b', node: 'n2' },
        { id: 'zz', node: 'n1' },
      ],
    );
    assert.equal(streams.headers['x-vigil-partial'], 'n4');
    const models = await call(`${n1.url}/v1/models`);
    assert.deepEqual(
      models.json<{ data: Array<{ id: string }> }>().data.map((m) => m.id),
      ['b-3', 'cam-a', 'cam-b', 'zz'],
    );
    // Alerts: the newest `limit` across nodes, or the oldest from `since`; truncated when any were left.
    const newest = await call(`${n1.url}/v1/alerts?limit=3`);
    assert.deepEqual(
      newest.json<{ alerts: Alert[] }>().alerts.map((a) => a.wallTime),
      [3, 5, 6],
    );
    assert.equal(newest.json().truncated, true);
    const oldest = await call(`${n1.url}/v1/alerts?since=0&limit=2`);
    assert.deepEqual(
      oldest.json<{ alerts: Alert[] }>().alerts.map((a) => a.wallTime),
      [1, 2],
    );
    const all = await call(`${n1.url}/v1/alerts`);
    assert.equal(all.json<{ alerts: Alert[] }>().alerts.length, 5);
    assert.equal(all.json().truncated, false);
  });

  it('POST /streams goes where placement says; uploads are refused', async () => {
    const created = await call(`${n1.url}/v1/streams`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ id: 'new-1', source: 'rtsp://cam.example/1' }) });
    assert.equal(created.status, 201);
    assert.equal(created.headers.location, '/v1/streams/new-1');
    assert.equal(created.headers['x-vigil-node'], 'n2');
    assert.equal(created.json().node, 'n2');
    const form = new FormData();
    form.set('file', new Blob([Buffer.from('not a video')]), 'a.mp4');
    const upload = await fetch(`${n1.url}/v1/streams`, { method: 'POST', headers: { authorization: CLIENT_AUTH }, body: form });
    assert.equal(upload.status, 400);
    const error = ((await upload.json()) as { error: { code: string; message: string } }).error;
    assert.equal(error.code, 'BAD_INPUT');
    assert.match(error.message, /^uploads are not supported in cluster mode: .*give a source URL/);
  });

  it('the added latency of a forwarded GET vs a direct one (median of 200, loopback)', async (t) => {
    const median = async (url: string) => {
      for (let i = 0; i < 20; i++) await call(url);
      const times: number[] = [];
      for (let i = 0; i < 200; i++) {
        const started = performance.now();
        const res = await call(url);
        times.push(performance.now() - started);
        assert.equal(res.status, 200);
      }
      return times.sort((a, b) => a - b)[100]!;
    };
    const direct = await median(`${n2.url}/v1/streams/cam-b`);
    const forwarded = await median(`${n1.url}/v1/streams/cam-b`);
    const line = `routing overhead: direct GET p50 ${direct.toFixed(2)} ms, forwarded p50 ${forwarded.toFixed(2)} ms, added ${(forwarded - direct).toFixed(2)} ms (200 each, loopback, keep-alive)`;
    t.diagnostic(line);
    console.log(line);
    assert.ok(forwarded - direct < 50, line);
  });

  it('credentials never reach a log line', () => {
    const lines = [...n1.logs, ...n2.logs, ...strict.logs];
    assert.ok(lines.some((l) => l.includes('node n9')), 'the failures were logged');
    for (const line of lines) assert.ok(!line.includes('proxy-test-secret'), line);
  });
});

describe('a Vigil server in cluster mode (createApp with cluster routing)', () => {
  let owner: TestNode;
  let server: TestServer;
  let vigil: { url: string; close(): Promise<void> };
  before(async () => {
    owner = await startNode('n2', { streams: ['cam-b'] });
    const onOwner: StreamRoute = { kind: 'remote', nodeId: 'n2', url: owner.url };
    // A test server's stream manager, served by an app built with the routing (what `vigil serve --cluster` does with its node).
    server = await startTestServer();
    const { app } = createApp({ manager: server.ready, auth: { tokens: [TOKEN] }, cluster: new StaticRouting('n1', { 'cam-b': onOwner }, [{ nodeId: 'n2', url: owner.url }], { kind: 'local' }, LOOPBACK) });
    const listening = await listenLoopback(http.createServer(app), '127.0.0.1');
    vigil = { url: `http://127.0.0.1:${listening.port}`, close: listening.close };
  });
  after(async () => {
    await vigil?.close();
    await server?.close();
    await owner?.close();
    await disposeSharedModel();
  });

  it("its own routes answer behind the proxy: merged listing, chat by model, the chat body still parsed for a local stream, uploads refused", async () => {
    const headers = { authorization: AUTH.Authorization, 'content-type': 'application/json' };
    const streams = await fetch(`${vigil.url}/v1/streams`, { headers });
    assert.deepEqual(((await streams.json()) as { streams: Array<{ id: string }> }).streams.map((s) => s.id), ['cam-b']);
    const chat = (model: string) => fetch(`${vigil.url}/v1/chat/completions`, { method: 'POST', headers, body: JSON.stringify({ model, messages: [{ role: 'user', content: 'what color?' }] }) });
    const remote = await chat('cam-b');
    assert.equal(remote.headers.get('x-vigil-node'), 'n2');
    assert.equal(((await remote.json()) as { node: string }).node, 'n2');
    // Vigil's chat route read the model from the body the proxy parsed (else: 400, no messages).
    const local = await chat('not-here');
    assert.equal(local.status, 404);
    assert.equal(((await local.json()) as { error: { code: string } }).error.code, 'STREAM_NOT_FOUND');
    const form = new FormData();
    form.set('file', new Blob([Buffer.from('not a video')]), 'a.mp4');
    const upload = await fetch(`${vigil.url}/v1/streams`, { method: 'POST', headers: { authorization: AUTH.Authorization }, body: form });
    assert.equal(upload.status, 400);
  });
});

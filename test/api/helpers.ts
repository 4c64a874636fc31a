/**
 * Shared pieces of the service tests: the probe-needle model (loaded once per test file and shared
 * by every server the file starts, as in production), generated needle clips in a temp folder that
 * the server may read files from, and a real HTTP server on 127.0.0.1 with a fresh data folder.
 */
import assert from 'node:assert/strict';
import { Ajv } from 'ajv';
import request from 'supertest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeProbeClip, type Needle } from '../../ingest/index.js';
import type { AuthConfig } from '../../api/auth.js';
import { type RunningServer, startServer, type ServerOptions } from '../../api/server.js';
import type { StreamManager, StreamManagerOptions, StreamStatus } from '../../src/engine/streamManager.js';
import { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import { probeModelDir } from '../helpers/probeModels.js';
import type { Response } from 'superagent';

export const TOKEN = 'test-token-0123456789abcdef';
export const AUTH = { Authorization: `Bearer ${TOKEN}` };

let modelPromise: Promise<VisionLanguageModel> | null = null;
export function sharedModel(): Promise<VisionLanguageModel> {
  modelPromise ??= VisionLanguageModel.load(probeModelDir('probe-needle'));
  return modelPromise;
}
export async function disposeSharedModel(): Promise<void> {
  if (modelPromise) await (await modelPromise).dispose();
  modelPromise = null;
}

const temps: string[] = [];
process.on('exit', () => {
  for (const dir of temps) fs.rmSync(dir, { recursive: true, force: true });
});
export function tempDir(prefix = 'vigil-api-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  temps.push(dir);
  return dir;
}

export const question = (background: string) => `What color was the square on the ${background} screen?`;

/** Two 40-s clips with different needles: each stream's answers must come from its own clip only. */
export const CLIP_NEEDLES: Record<'a' | 'b', Needle[]> = {
  a: [{ start: 10, duration: 3, background: 'red', square: 'green' }],
  b: [
    { start: 14, duration: 3, background: 'red', square: 'blue' },
    { start: 26, duration: 3, background: 'yellow', square: 'magenta' },
  ],
};

/** The clips folder (the server's allowed files folder) with a.mp4 and b.mp4. */
export async function makeClips(durationS = 40): Promise<string> {
  const dir = tempDir('vigil-clips-');
  for (const [name, needles] of Object.entries(CLIP_NEEDLES)) {
    await makeProbeClip({ out: path.join(dir, `${name}.mp4`), durationS, width: 160, height: 90, needles });
  }
  return dir;
}

export interface TestServer extends RunningServer {
  dataDir: string;
  logs: string[];
  ready: StreamManager;
}

export interface TestServerOptions {
  dataDir?: string;
  filesDir?: string | null;
  auth?: AuthConfig;
  manager?: Partial<StreamManagerOptions>;
  server?: Partial<ServerOptions>;
}

export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const dataDir = options.dataDir ?? tempDir('vigil-data-');
  const logs: string[] = [];
  const running = await startServer({
    host: '127.0.0.1',
    port: 0,
    auth: options.auth ?? { tokens: [TOKEN] },
    log: (line) => logs.push(line),
    ...options.server,
    manager: {
      dataDir,
      model: await sharedModel(),
      policy: { filesDir: options.filesDir ?? null },
      store: { fsync: 'none' },
      // Every sampled frame encoded: these tests count frames and chunks. Gating has its own tests
      // (test/api/gate.test.ts), which pass defaults of their own.
      defaults: { gate: 'off' },
      ...options.manager,
    },
  });
  const ready = await running.manager;
  return { ...running, dataDir, logs, ready };
}

/** Polls until `check` returns a value (not undefined/false) or the time is up. */
export async function waitFor<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Waits until a stream has read its whole (finite) source. */
export function waitEnded(server: TestServer, id: string, timeoutMs = 30_000): Promise<StreamStatus> {
  return waitFor(`stream ${id} to end`, () => {
    const s = server.ready.status(id);
    if (s.state === 'failed') assert.fail(`stream ${id} failed: ${JSON.stringify(s.error)}`);
    return s.state === 'ended' ? s : undefined;
  }, timeoutMs);
}

/** A supertest body parser that keeps an event stream's whole text (use with `.buffer(true).parse(wholeText)`). */
export function wholeText(response: Response, callback: (error: Error | null, body: string) => void): void {
  let text = '';
  response.on('data', (chunk: Buffer) => (text += chunk.toString()));
  response.on('end', () => callback(null, text));
}

/** Parses a Server-Sent Events body into events. */
export function parseSse(text: string): Array<{ event: string; data: string }> {
  return text
    .split('\n\n')
    .filter((block) => block.trim() && !block.startsWith(':'))
    .map((block) => {
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
      }
      return { event, data: data.join('\n') };
    });
}

/** The served OpenAPI document's schemas, compiled by ajv (OpenAPI 3.0's boolean exclusiveMinimum made draft-07). */
export async function openApiValidator(url: string): Promise<(schema: string, value: unknown) => void> {
  const doc = (await request(url).get('/openapi.json').expect(200)).body as { components: { schemas: Record<string, unknown> } };
  const draft7 = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(draft7);
    if (!node || typeof node !== 'object') return node;
    const out = Object.fromEntries(Object.entries(node).map(([k, v]) => [k, draft7(v)])) as Record<string, unknown>;
    for (const [flag, bound] of [['exclusiveMinimum', 'minimum'], ['exclusiveMaximum', 'maximum']] as const) {
      if (out[flag] === true) {
        out[flag] = out[bound];
        delete out[bound];
      } else if (out[flag] === false) delete out[flag];
    }
    return out;
  };
  const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
  ajv.addSchema({ components: { schemas: draft7(doc.components.schemas) } }, 'openapi.json');
  return (schema, value) => {
    const validate = ajv.getSchema(`openapi.json#/components/schemas/${schema}`);
    assert.ok(validate, `the document has schema ${schema}`);
    assert.ok(validate(value), `${schema}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(value)}`);
  };
}

import fs from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { checkRange, expandEnv, type MqttConfig, type WebhookConfig } from '../src/engine/streamManager.js';
import { VigilError } from '../common/errors.js';
import { type ServiceConfig, ServiceConfigSchema } from './schemas/config.js';

/**
 * Reads `vigil.yaml` (or JSON): `${VAR}` placeholders are expanded from the environment, then the
 * whole file is validated with the API's own schemas (a camera is a `POST /v1/streams` body with an
 * id). Camera sources keep their placeholders: the manager expands them when the stream starts, so
 * camera passwords are never written to the data folder. Problems are BAD_CONFIG errors naming the field.
 */
export function loadServiceConfig(file: string, env: NodeJS.ProcessEnv = process.env): ServiceConfig {
  let raw: unknown;
  try {
    raw = parseYaml(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new VigilError('FILE_NOT_FOUND', `config file not found: ${file}`, { cause: error });
    throw new VigilError('BAD_CONFIG', `${file} is not valid YAML: ${(error as Error).message}`, { cause: error });
  }
  const expanded = expandTree(raw ?? {}, [], env, file);
  const result = ServiceConfigSchema.safeParse(expanded);
  if (!result.success) {
    const problems = result.error.issues.slice(0, 5).map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`);
    throw new VigilError('BAD_CONFIG', `${file}: ${problems.join('; ')}`);
  }
  const config = result.data;
  for (const range of config.urlPolicy?.allowNetworks ?? []) checkRange(range);
  const ids = new Set<string>();
  for (const camera of config.cameras ?? []) {
    if (ids.has(camera.id)) throw new VigilError('BAD_CONFIG', `${file}: camera id '${camera.id}' appears twice`);
    ids.add(camera.id);
    // Fail at startup, not at the first reconnect, when a camera's secret is missing.
    expandEnv(camera.source, env, `${file}: camera '${camera.id}'`);
  }
  // Fail at startup when a webhook's secret or a broker's credentials are missing, or a CA file cannot be read.
  webhooksFromConfig(config, env, path.dirname(file));
  mqttFromConfig(config, env, path.dirname(file));
  return config;
}

/**
 * The config file's webhooks with their secrets read from the environment variables they name
 * (`secretEnv`) and `ca` read from its PEM file (a path relative to `baseDir`) unless it is PEM
 * text. BAD_CONFIG naming the webhook and the variable, never the secret.
 */
export function webhooksFromConfig(config: ServiceConfig, env: NodeJS.ProcessEnv = process.env, baseDir = '.'): WebhookConfig[] {
  const ids = new Set<string>();
  return (config.webhooks ?? []).map((w) => {
    if (ids.has(w.id)) throw new VigilError('BAD_CONFIG', `webhook id '${w.id}' appears twice`);
    ids.add(w.id);
    const secret = env[w.secretEnv];
    if (secret === undefined || secret === '') throw new VigilError('BAD_CONFIG', `webhook '${w.id}': the environment variable ${w.secretEnv} (its secretEnv) is not set`);
    if (secret.length < 16) throw new VigilError('BAD_CONFIG', `webhook '${w.id}': the secret in ${w.secretEnv} must have at least 16 characters`);
    const ca = w.ca === undefined ? undefined : readCa(w.ca, baseDir, `webhook '${w.id}'`);
    return { id: w.id, url: w.url, secret, ...(ca !== undefined ? { ca } : {}), ...(w.timeoutMs !== undefined ? { timeoutMs: w.timeoutMs } : {}) };
  });
}

/**
 * The config file's MQTT brokers with their user name and password read from the environment
 * variables they name (`usernameEnv`, `passwordEnv`; inline passwords are refused by the schema and
 * `user:password@` in the URL here) and `ca` read as for webhooks. Ids are unique among webhooks and
 * brokers (a watch's `notify` names either). BAD_CONFIG naming the broker and the variable, never the value.
 */
export function mqttFromConfig(config: ServiceConfig, env: NodeJS.ProcessEnv = process.env, baseDir = '.'): MqttConfig[] {
  const ids = new Set((config.webhooks ?? []).map((w) => w.id));
  return (config.mqtt ?? []).map((m) => {
    if (ids.has(m.id)) throw new VigilError('BAD_CONFIG', `notification id '${m.id}' appears twice (webhooks and MQTT brokers share ids: a watch's notify names either)`);
    ids.add(m.id);
    let url: URL;
    try {
      url = new URL(m.url);
    } catch {
      throw new VigilError('BAD_CONFIG', `MQTT broker '${m.id}': the URL is not a valid URL`);
    }
    if (url.protocol !== 'mqtt:' && url.protocol !== 'mqtts:') throw new VigilError('BAD_CONFIG', `MQTT broker '${m.id}': only mqtt:// and mqtts:// URLs are allowed (got ${url.protocol})`);
    if (url.username || url.password) {
      throw new VigilError('BAD_CONFIG', `MQTT broker '${m.id}': inline secrets are refused: no user:password in the URL (name environment variables with usernameEnv / passwordEnv)`);
    }
    const fromEnv = (name: string | undefined, what: string): string | undefined => {
      if (name === undefined) return undefined;
      const value = env[name];
      if (value === undefined || value === '') throw new VigilError('BAD_CONFIG', `MQTT broker '${m.id}': the environment variable ${name} (its ${what}) is not set`);
      return value;
    };
    const username = fromEnv(m.usernameEnv, 'usernameEnv');
    const password = fromEnv(m.passwordEnv, 'passwordEnv');
    if (password !== undefined && username === undefined) throw new VigilError('BAD_CONFIG', `MQTT broker '${m.id}': passwordEnv needs usernameEnv`);
    const ca = m.ca === undefined ? undefined : readCa(m.ca, baseDir, `MQTT broker '${m.id}'`);
    return {
      id: m.id,
      url: m.url,
      ...(m.topicPrefix !== undefined ? { topicPrefix: m.topicPrefix } : {}),
      ...(m.qos !== undefined ? { qos: m.qos } : {}),
      ...(username !== undefined ? { username } : {}),
      ...(password !== undefined ? { password } : {}),
      ...(ca !== undefined ? { ca } : {}),
    };
  });
}

/** `ca`: PEM text as it is, else a PEM file's path relative to the config file. */
function readCa(value: string, baseDir: string, what: string): string {
  if (value.includes('-----BEGIN')) return value;
  try {
    return fs.readFileSync(path.resolve(baseDir, value), 'utf8');
  } catch (error) {
    throw new VigilError('BAD_CONFIG', `${what}: cannot read its ca file ${value}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, { cause: error });
  }
}

function expandTree(value: unknown, at: string[], env: NodeJS.ProcessEnv, file: string): unknown {
  if (typeof value === 'string') {
    const isCameraSource = at.length === 3 && at[0] === 'cameras' && at[2] === 'source';
    return isCameraSource ? value : expandEnv(value, env, `${file}: ${at.join('.')}`);
  }
  if (Array.isArray(value)) return value.map((v, i) => expandTree(v, [...at, String(i)], env, file));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, expandTree(v, [...at, k], env, file)]));
  }
  return value;
}

import fs from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { checkRange, expandEnv, type WebhookConfig } from '../src/engine/streamManager.js';
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
  // Fail at startup when a webhook's secret is missing or its CA file cannot be read.
  webhooksFromConfig(config, env, path.dirname(file));
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
    let ca: string | undefined;
    if (w.ca !== undefined) {
      if (w.ca.includes('-----BEGIN')) ca = w.ca;
      else {
        try {
          ca = fs.readFileSync(path.resolve(baseDir, w.ca), 'utf8');
        } catch (error) {
          throw new VigilError('BAD_CONFIG', `webhook '${w.id}': cannot read its ca file ${w.ca}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, { cause: error });
        }
      }
    }
    return { id: w.id, url: w.url, secret, ...(ca !== undefined ? { ca } : {}), ...(w.timeoutMs !== undefined ? { timeoutMs: w.timeoutMs } : {}) };
  });
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

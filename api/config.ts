import fs from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { checkRange, expandEnv } from '../src/engine/streamManager.js';
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
  return config;
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

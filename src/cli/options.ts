import { InvalidArgumentError } from 'commander';
import { parseByteSize } from '../../common/byteSize.js';
import { LIMITS, Settings, type TierSettings } from '../../common/settings.js';

export function parseInteger(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`expected an integer in ${min}..${max}, got '${value}'`);
    return n;
  };
}

export function parseNumber(min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`expected a number in ${min}..${max}, got '${value}'`);
    return n;
  };
}

type NumericSetting = 'fps' | 'window' | 'sinks' | 'r' | 'maxTokens' | 'temperature';

/** A command-line value checked by the same schema (range, integer) as the API and the config file (common/settings.ts). */
export function parseSetting(name: NumericSetting) {
  const schema = Settings[name];
  const { min, max } = LIMITS[name];
  const integer = name === 'window' || name === 'sinks' || name === 'r' || name === 'maxTokens';
  return (value: string): number => {
    const result = schema.safeParse(value.trim() === '' ? Number.NaN : Number(value));
    if (!result.success) throw new InvalidArgumentError(`expected ${integer ? 'an integer' : 'a number'} in ${min}..${max}, got '${value}'`);
    return result.data;
  };
}

/** --keep-full: stream seconds (>= 0) kept at the stream's dtype, checked by the same schema as the API's tiers.keepFullSec. */
export function parseKeepFull(value: string): number {
  const result = Settings.keepFullSec.safeParse(value.trim() === '' ? Number.NaN : Number(value));
  if (!result.success) throw new InvalidArgumentError(`expected stream seconds >= ${LIMITS.keepFullSec.min}, got '${value}'`);
  return result.data;
}

/** --kv-share: the share of the budget KV may take, checked by the same schema as the API's tiers.kvShare. */
export function parseKvShare(value: string): number {
  const result = Settings.kvShare.safeParse(value.trim() === '' ? Number.NaN : Number(value));
  if (!result.success) throw new InvalidArgumentError(`expected a share of the budget from ${LIMITS.kvShare.min} to ${LIMITS.kvShare.max}, got '${value}'`);
  return result.data;
}

/** The tiers the command-line flags ask for (`--keep-full`, `--kv-share`, `--no-archive`), undefined when none. */
export function tiersFromOptions(options: { keepFull?: number; kvShare?: number; archive?: boolean }): TierSettings | undefined {
  const tiers: TierSettings = {
    ...(options.keepFull !== undefined ? { keepFullSec: options.keepFull } : {}),
    ...(options.kvShare !== undefined ? { kvShare: options.kvShare } : {}),
    // Commander sets archive to true unless --no-archive is given: only false is asked for.
    ...(options.archive === false ? { archive: false } : {}),
  };
  return Object.keys(tiers).length > 0 ? tiers : undefined;
}

/** A byte size on the command line ("20GB" = 20e9, "1.5GiB" = 1.5 * 2^30, or bytes), checked by the same parser as the API. */
export function parseSize(value: string): number {
  try {
    return parseByteSize(value, 'size');
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message.replace(/^size: /, ''));
  }
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

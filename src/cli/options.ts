import { InvalidArgumentError } from 'commander';
import { parseByteSize } from '../../common/byteSize.js';
import { LIMITS, Settings } from '../../common/settings.js';

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

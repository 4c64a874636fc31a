import { VigilError } from './errors.js';

/**
 * Byte sizes as people write them: "20GB", "200 MB", "1.5GiB", or a plain count of bytes.
 * Decimal units are powers of 1000 (kB/KB 1e3, MB 1e6, GB 1e9, TB 1e12), binary units powers of
 * 1024 (KiB, MiB, GiB, TiB), as in IEC 80000-13 and what `df -H` / `df -h` print. "20G" or "20M"
 * alone are refused: they mean either, and a budget should not be off by 7 %. Units are
 * case-insensitive (mb = MB); the result is rounded down to whole bytes. No npm package in
 * package.json parses sizes, so this is a small validated parser. Leaf module.
 */
const UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
};

const SIZE = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)\s*$/i;

/** A positive whole number of bytes from a number or a size string, else BAD_INPUT naming `what`, the value and the accepted forms. */
export function parseByteSize(value: unknown, what = 'size'): number {
  const fail = (why: string): never => {
    throw new VigilError('BAD_INPUT', `${what}: ${why} (got ${JSON.stringify(value) ?? String(value)}); write bytes or a size such as 200MB, 20GB (powers of 1000) or 1.5GiB (powers of 1024)`);
  };
  let bytes: number;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) fail('must be a finite number of bytes');
    if (!Number.isInteger(value)) fail('a number of bytes must be a whole number');
    bytes = value;
  } else if (typeof value === 'string') {
    if (/^\s*-/.test(value)) fail('must be more than 0');
    const m = SIZE.exec(value);
    if (!m) fail('is not a size');
    const unit = m![2]!.toLowerCase();
    const scale = unit === '' ? 1 : UNITS[unit];
    if (scale === undefined) fail(`unknown unit '${m![2]}'${/^[kmgt]$/i.test(unit) ? ` (say ${unit.toUpperCase()}B or ${unit.toUpperCase()}iB)` : ''}`);
    bytes = Math.floor(Number(m![1]) * scale!);
  } else {
    return fail('must be a number of bytes or a size string');
  }
  if (bytes <= 0) fail('must be more than 0');
  if (!Number.isSafeInteger(bytes)) fail(`must be at most ${Number.MAX_SAFE_INTEGER} bytes`);
  return bytes;
}

/** A size for messages and stats: the exact bytes plus a readable decimal form, e.g. "20000000000 bytes (20 GB)". */
export function describeBytes(bytes: number): string {
  return `${bytes} bytes (${shortBytes(bytes)})`;
}

/** Decimal units (GB = 1e9), three significant digits: "1.61 GB", "312 kB", "900 B". */
export function shortBytes(bytes: number): string {
  const steps: Array<[number, string]> = [
    [1e12, 'TB'],
    [1e9, 'GB'],
    [1e6, 'MB'],
    [1e3, 'kB'],
  ];
  for (const [scale, unit] of steps) if (Math.abs(bytes) >= scale) return `${Number((bytes / scale).toPrecision(3))} ${unit}`;
  return `${bytes} B`;
}

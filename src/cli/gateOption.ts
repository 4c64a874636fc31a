import { InvalidArgumentError } from 'commander';
import { VigilError } from '../../common/errors.js';
import { LIMITS, Settings } from '../../common/settings.js';
import type { GateRequest } from '../engine/frameGate.js';

/**
 * `--gate off|<threshold>`: 'off', or the fraction of the frame that must change for a frame to be
 * encoded, as a number (0.005) or a percentage (0.5%), checked by the same schema as the API.
 */
export function parseGateOption(value: string): 'off' | number {
  const text = value.trim();
  if (text === 'off') return 'off';
  const percent = text.endsWith('%');
  const number = text === '' || text === '%' ? Number.NaN : Number(percent ? text.slice(0, -1) : text) / (percent ? 100 : 1);
  const result = Settings.gateThreshold.safeParse(number);
  if (!result.success) {
    throw new InvalidArgumentError(`expected 'off' or a fraction of the frame in ${LIMITS.gateThreshold.min}..${LIMITS.gateThreshold.max} (e.g. 0.005 or 0.5%), got '${value}'`);
  }
  return result.data;
}

/** `--gate-max-hold <s>`: the longest stretch of stream time without an encoded frame. */
export function parseGateMaxHold(value: string): number {
  const result = Settings.gateMaxHoldSec.safeParse(value.trim() === '' ? Number.NaN : Number(value));
  if (!result.success) throw new InvalidArgumentError(`expected seconds in ${LIMITS.gateMaxHoldSec.min}..${LIMITS.gateMaxHoldSec.max}, got '${value}'`);
  return result.data;
}

/** The gate the two options ask for (undefined: neither given, the default applies). */
export function gateFromOptions(gate: 'off' | number | undefined, maxHoldSec: number | undefined): GateRequest | undefined {
  if (gate === 'off') {
    if (maxHoldSec !== undefined) throw new VigilError('BAD_INPUT', '--gate-max-hold needs the gate on (it was --gate off)');
    return 'off';
  }
  if (gate === undefined && maxHoldSec === undefined) return undefined;
  return { ...(gate !== undefined ? { threshold: gate } : {}), ...(maxHoldSec !== undefined ? { maxHoldSec } : {}) };
}

/** A chunk's stream time as m:ss, or its span "m:ss-m:ss" when gating extended it past its frame. */
export function clockSpan(tStart: number, tEnd: number): string {
  const clock = (t: number) => `${Math.floor(t / 60)}:${Math.floor(t % 60).toString().padStart(2, '0')}`;
  const start = clock(tStart);
  const end = clock(tEnd);
  return end === start ? start : `${start}-${end}`;
}

import type { KeyframeInfo } from './types.js';

/**
 * Keyframe spacing from the scanned packet times and the keyframe times among them (ffprobe's
 * packet list and ffmpeg's framecrc output both end here). The stretch after the last keyframe is
 * a lower bound of the next interval, so it counts toward the maximum too.
 */
export function keyframeSpacing(times: readonly number[], keyTimes: readonly number[]): KeyframeInfo {
  const keys = [...keyTimes].sort((a, b) => a - b);
  const scannedS = times.length > 1 ? Math.max(...times) - Math.min(...times) : 0;
  if (keys.length < 2) return { count: keys.length, scannedS, maxIntervalS: null, meanIntervalS: null };
  let max = Math.max(...times) - keys[keys.length - 1]!;
  for (let i = 1; i < keys.length; i++) max = Math.max(max, keys[i]! - keys[i - 1]!);
  return { count: keys.length, scannedS, maxIntervalS: max, meanIntervalS: (keys[keys.length - 1]! - keys[0]!) / (keys.length - 1) };
}

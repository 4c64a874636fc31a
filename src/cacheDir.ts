import os from 'node:os';
import path from 'node:path';

/** Where generated models and clips live: $VIGIL_CACHE_DIR, else $XDG_CACHE_HOME/vigil, else ~/.cache/vigil. */
export function vigilCacheDir(): string {
  if (process.env.VIGIL_CACHE_DIR) return path.resolve(process.env.VIGIL_CACHE_DIR);
  const base = process.env.XDG_CACHE_HOME ? path.resolve(process.env.XDG_CACHE_HOME) : path.join(os.homedir(), '.cache');
  return path.join(base, 'vigil');
}

/** Where stream memories live by default: $VIGIL_DATA_DIR, else $XDG_DATA_HOME/vigil, else ~/.local/share/vigil. */
export function vigilDataDir(): string {
  if (process.env.VIGIL_DATA_DIR) return path.resolve(process.env.VIGIL_DATA_DIR);
  const base = process.env.XDG_DATA_HOME ? path.resolve(process.env.XDG_DATA_HOME) : path.join(os.homedir(), '.local', 'share');
  return path.join(base, 'vigil');
}

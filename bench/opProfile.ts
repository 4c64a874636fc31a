/**
 * Where a graph's run time goes, by operator type, from onnxruntime's own profile: which share of a
 * vision-encoder frame int8 MatMuls can speed up and which (attention, softmax, GELU, norms) they cannot.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ort from 'onnxruntime-node';

export interface OpShare {
  op: string;
  /** Mean ms per run spent in nodes of this op type. */
  ms: number;
  share: number;
}

/** Runs `file` (warm-up 1, then `runs`) with profiling and returns the per-op-type time, largest first. */
export async function profileOpTypes(
  file: string,
  feeds: Record<string, ort.Tensor>,
  options: ort.InferenceSession.SessionOptions,
  runs = 2,
): Promise<{ ops: OpShare[]; runMs: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-opprofile-'));
  try {
    const session = await ort.InferenceSession.create(file, { ...options, enableProfiling: true, profileFilePrefix: path.join(dir, 'run') });
    try {
      for (let i = 0; i < runs + 1; i++) await session.run(feeds);
      session.endProfiling();
    } finally {
      await session.release();
    }
    const profile = fs.readdirSync(dir).find((f) => f.endsWith('.json'));
    if (!profile) throw new Error(`onnxruntime wrote no profile for ${file}`);
    const events = JSON.parse(fs.readFileSync(path.join(dir, profile), 'utf8')) as Array<{ cat?: string; name?: string; dur?: number; args?: { op_name?: string } }>;
    const runStarts = events.filter((e) => e.name === 'model_run');
    // The first run is the warm-up: skip its node events (they come before the first model_run event ends).
    const measured = runStarts.slice(1);
    const byOp = new Map<string, number>();
    let nodeEvents = events.filter((e) => e.cat === 'Node' && e.name?.endsWith('_kernel_time'));
    nodeEvents = nodeEvents.slice(Math.round(nodeEvents.length / (runs + 1)));
    for (const e of nodeEvents) byOp.set(e.args?.op_name ?? '?', (byOp.get(e.args?.op_name ?? '?') ?? 0) + (e.dur ?? 0) / 1000 / runs);
    const total = [...byOp.values()].reduce((a, b) => a + b, 0);
    const ops = [...byOp.entries()].map(([op, ms]) => ({ op, ms, share: ms / total })).sort((a, b) => b.ms - a.ms);
    const runMs = measured.reduce((a, e) => a + (e.dur ?? 0) / 1000, 0) / Math.max(1, measured.length);
    return { ops, runMs };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

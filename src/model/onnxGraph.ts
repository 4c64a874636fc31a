import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { VigilError } from '../../common/errors.js';

export interface TensorInfo {
  name: string;
  type: string;
  /** Numeric dims are fixed; strings are symbolic names such as 'batch_size'. */
  shape: ReadonlyArray<number | string>;
}

/**
 * onnxruntime's CPU threading, from the environment. VIGIL_THREADS: intra-op threads (default: every
 * core this process may use; 0: onnxruntime's own default, which picked one thread on the project's
 * 2-core VMs and ran the vision encoder at half speed, docs/PERFORMANCE.md). VIGIL_ORT_SPINNING:
 * 1 lets idle pool threads spin for work, 0 makes them sleep at once. Unset, each graph gets what
 * measured faster for it: the vision encoder and embeddings spin (many short parallel ops), the
 * decoder does not (its pool threads spinning between calls took the cores from the main thread's
 * work and other streams: decode and frame prefill were slower, docs/PERFORMANCE.md "Decode in place").
 */
export function ortThreading(): { intraOpThreads: number; spinning: boolean; decoderSpinning: boolean } {
  const threadsText = process.env.VIGIL_THREADS;
  const threads = threadsText === undefined || threadsText === '' ? os.availableParallelism() : Number(threadsText);
  if (!Number.isInteger(threads) || threads < 0) {
    throw new VigilError('BAD_CONFIG', `VIGIL_THREADS must be a whole number >= 0 (0: onnxruntime's default), got '${threadsText}'`);
  }
  const spinningText = process.env.VIGIL_ORT_SPINNING;
  if (spinningText !== undefined && spinningText !== '' && spinningText !== '0' && spinningText !== '1') {
    throw new VigilError('BAD_CONFIG', `VIGIL_ORT_SPINNING must be 0 or 1, got '${spinningText}'`);
  }
  const explicit = spinningText === '0' || spinningText === '1' ? spinningText === '1' : undefined;
  return { intraOpThreads: threads, spinning: explicit ?? true, decoderSpinning: explicit ?? false };
}

/** Which graph a session runs: its threading defaults differ (ortThreading). */
export type GraphRole = 'decoder' | 'other';

/** onnxruntime options from the environment: VIGIL_EXECUTION_PROVIDERS (e.g. "cuda,cpu") and ortThreading(). */
function sessionOptions(role: GraphRole): ort.InferenceSession.SessionOptions {
  const providers = (process.env.VIGIL_EXECUTION_PROVIDERS ?? 'cpu').split(',').map((p) => p.trim()).filter(Boolean);
  const threading = ortThreading();
  const spinning = role === 'decoder' ? threading.decoderSpinning : threading.spinning;
  return {
    executionProviders: providers,
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
    ...(threading.intraOpThreads > 0 ? { intraOpNumThreads: threading.intraOpThreads } : {}),
    extra: { session: { intra_op: { allow_spinning: spinning ? '1' : '0' } } },
  };
}

function describeShape(shape: ReadonlyArray<number | string>): string {
  return `[${shape.join(', ')}]`;
}

/** One onnxruntime session with the checks the runtime relies on: declared inputs, dtypes, fixed dims. */
export class OnnxGraph {
  private constructor(
    readonly file: string,
    readonly session: ort.InferenceSession,
    private readonly inputs: Map<string, TensorInfo>,
    private readonly outputs: Map<string, TensorInfo>,
  ) {}

  static async open(file: string, role: GraphRole = 'other'): Promise<OnnxGraph> {
    if (!fs.existsSync(file)) throw new VigilError('FILE_NOT_FOUND', `ONNX graph not found: ${file}`);
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(file, sessionOptions(role));
    } catch (error) {
      const message = (error as Error).message ?? String(error);
      const external = /external data|onnx_data/i.test(message);
      throw new VigilError(
        'CORRUPT_MODEL',
        `onnxruntime could not load ${file}${external ? ' (its .onnx_data file is missing or truncated)' : ''}: ${message.split('\n')[0]}`,
        { cause: error },
      );
    }
    const info = (names: readonly string[], metadata: readonly ort.InferenceSession.ValueMetadata[]) => {
      const map = new Map<string, TensorInfo>();
      names.forEach((name, i) => {
        const meta = metadata[i] as { type?: string; shape?: Array<number | string> } | undefined;
        map.set(name, { name, type: meta?.type ?? 'unknown', shape: meta?.shape ?? [] });
      });
      return map;
    };
    return new OnnxGraph(file, session, info(session.inputNames, session.inputMetadata), info(session.outputNames, session.outputMetadata));
  }

  get name(): string {
    return path.basename(this.file);
  }

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.session.outputNames;
  }

  hasInput(name: string): boolean {
    return this.inputs.has(name);
  }

  input(name: string): TensorInfo {
    const info = this.inputs.get(name);
    if (!info) throw new VigilError('NOT_A_MODEL', `${this.file} has no input '${name}' (inputs: ${this.inputNames.join(', ')})`);
    return info;
  }

  output(name: string): TensorInfo {
    const info = this.outputs.get(name);
    if (!info) throw new VigilError('NOT_A_MODEL', `${this.file} has no output '${name}'`);
    return info;
  }

  /**
   * Runs with exactly the declared inputs, checking each feed's dtype and fixed dims first.
   * `into` names outputs that onnxruntime writes into the given tensors instead of fresh arrays
   * (callers reuse them: fresh tens of MB per call cost page faults and garbage collections).
   */
  async run(feeds: Record<string, ort.Tensor>, fetches?: readonly string[], into?: Readonly<Record<string, ort.Tensor>>): Promise<Record<string, ort.Tensor>> {
    for (const [name, info] of this.inputs) {
      const tensor = feeds[name];
      if (!tensor) throw new VigilError('INTERNAL', `${this.name}: input '${name}' was not provided`);
      if (tensor.type !== info.type) {
        throw new VigilError('DTYPE_MISMATCH', `${this.name}: input '${name}' expects ${info.type} but got ${tensor.type}`);
      }
      const dims = tensor.dims;
      const mismatch =
        dims.length !== info.shape.length || info.shape.some((d, i) => typeof d === 'number' && d !== dims[i]);
      if (mismatch) {
        throw new VigilError(
          'SHAPE_MISMATCH',
          `${this.name}: input '${name}' expects shape ${describeShape(info.shape)} but got ${describeShape(dims)}`,
        );
      }
    }
    const extra = Object.keys(feeds).filter((n) => !this.inputs.has(n));
    if (extra.length > 0) throw new VigilError('INTERNAL', `${this.name}: unexpected inputs ${extra.join(', ')}`);
    if (into) {
      const outputs: Record<string, ort.Tensor | null> = Object.fromEntries((fetches ?? this.outputNames).map((name) => [name, null]));
      for (const [name, tensor] of Object.entries(into)) {
        if (!(name in outputs)) throw new VigilError('INTERNAL', `${this.name}: '${name}' is not among the outputs fetched`);
        outputs[name] = tensor;
      }
      const result = await this.session.run(feeds, outputs as ort.InferenceSession.FetchesType);
      // onnxruntime wrote into the given buffers; hand back the caller's own tensors.
      return { ...result, ...into };
    }
    return fetches ? this.session.run(feeds, fetches as string[]) : this.session.run(feeds);
  }

  private released: Promise<void> | null = null;

  /** Releases the onnxruntime session. Idempotent: every call returns the same promise. */
  dispose(): Promise<void> {
    this.released ??= this.session.release();
    return this.released;
  }

  get disposed(): boolean {
    return this.released !== null;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}

import fs from 'node:fs';
import { ExternalDataFile } from './externalDataFile.js';
import { GraphBuilder } from './graphBuilder.js';
import { modelProtoType } from './onnxSchema.js';

export interface OnnxModelWriterOptions {
  /** Path of the `.onnx` file; large weights go to `<path>_data` beside it. */
  path: string;
  graphName: string;
  opset: number;
  /** Initializers at least this large are stored externally; Infinity keeps all weights inline. */
  externalDataThresholdBytes?: number;
  metadata?: Record<string, string>;
}

/** ONNX IR version 8 pairs with opsets up to 18 and is read by every onnxruntime since 1.14. */
const IR_VERSION = 8;

/** Opset versions of the non-default domains a graph may use (onnxruntime's contrib ops are version 1). */
const DOMAIN_OPSETS: Record<string, number> = { 'com.microsoft': 1 };

export class OnnxModelWriter {
  readonly graph: GraphBuilder;
  private readonly externalData: ExternalDataFile | undefined;

  constructor(private readonly options: OnnxModelWriterOptions) {
    const threshold = options.externalDataThresholdBytes ?? Infinity;
    this.externalData = Number.isFinite(threshold) ? new ExternalDataFile(`${options.path}_data`) : undefined;
    this.graph = new GraphBuilder(options.graphName, this.externalData, threshold);
  }

  /** Writes and fsyncs the model (and its external data file). */
  save(): void {
    this.externalData?.close();
    const type = modelProtoType();
    const model = type.fromObject({
      ir_version: IR_VERSION,
      producer_name: 'vigil',
      producer_version: '0.1.0',
      opset_import: [
        { domain: '', version: this.options.opset },
        ...this.graph.domains.map((domain) => {
          const version = DOMAIN_OPSETS[domain];
          if (version === undefined) throw new Error(`no opset version known for operator domain '${domain}'`);
          return { domain, version };
        }),
      ],
      graph: this.graph.toProto(),
      metadata_props: Object.entries(this.options.metadata ?? {}).map(([key, value]) => ({ key, value })),
    });
    const bytes = type.encode(model).finish();
    const fd = fs.openSync(this.options.path, 'w');
    try {
      fs.writeSync(fd, bytes);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }
}

import fs from 'node:fs';
import path from 'node:path';

/**
 * Append-only `.onnx_data` file for large initializers. Weights are written as they are generated,
 * so building a 500 MB model never holds more than one tensor in memory.
 */
export class ExternalDataFile {
  readonly location: string;
  private readonly fd: number;
  private offset = 0;

  constructor(readonly filePath: string) {
    this.location = path.basename(filePath);
    this.fd = fs.openSync(filePath, 'w');
  }

  /** Writes `bytes` 64-byte aligned (lets onnxruntime map tensors without copies) and returns where. */
  append(bytes: Uint8Array): { offset: number; length: number } {
    const padding = (64 - (this.offset % 64)) % 64;
    if (padding > 0) {
      fs.writeSync(this.fd, new Uint8Array(padding));
      this.offset += padding;
    }
    const offset = this.offset;
    let written = 0;
    while (written < bytes.byteLength) {
      written += fs.writeSync(this.fd, bytes, written, bytes.byteLength - written);
    }
    this.offset += bytes.byteLength;
    return { offset, length: bytes.byteLength };
  }

  close(): void {
    fs.fsyncSync(this.fd);
    fs.closeSync(this.fd);
  }
}

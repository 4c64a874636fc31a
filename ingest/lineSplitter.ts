/** Splits a byte stream (ffmpeg's stderr) into lines; `\r` counts as a line end too (progress lines). */
export class LineSplitter {
  private partial = '';
  private readonly decoder = new TextDecoder();

  constructor(private readonly onLine: (line: string) => void) {}

  push(chunk: Uint8Array | string): void {
    const text = this.partial + (typeof chunk === 'string' ? chunk : this.decoder.decode(chunk, { stream: true }));
    const parts = text.split(/\r\n|\n|\r/);
    this.partial = parts.pop() ?? '';
    for (const line of parts) if (line.length > 0) this.onLine(line);
  }

  end(): void {
    const rest = this.partial + this.decoder.decode();
    this.partial = '';
    if (rest.length > 0) this.onLine(rest);
  }
}

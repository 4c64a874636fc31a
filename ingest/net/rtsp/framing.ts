/**
 * RTSP on the wire: the message type, header access, serialization, and the incremental framer
 * that splits a byte stream into text messages and interleaved binary frames. It knows nothing of
 * relaying; both sides of the relay (and the tests' fake servers) use it. Its limits bound what a
 * hostile peer can make the relay buffer.
 */

export interface RtspMessage {
  startLine: string;
  headers: Array<[string, string]>;
  body: Buffer;
}

/** Per text message: the header block (start line and headers) and the Content-Length body. */
export const FRAME_LIMITS = { maxHeaderBytes: 64 * 1024, maxBodyBytes: 1024 * 1024 } as const;

const RESPONSE_LINE = /^RTSP\/\d\.\d (\d{3})(?: .*)?$/;
const REQUEST_LINE = /^([A-Z][A-Z0-9_-]*) (\S+) RTSP\/\d\.\d$/;

/** Method and URI of a request; null for a response. */
export function requestOf(m: RtspMessage): { method: string; uri: string } | null {
  const match = REQUEST_LINE.exec(m.startLine);
  return match ? { method: match[1]!, uri: match[2]! } : null;
}

/** Status of a response; null for a request. */
export function statusOf(m: RtspMessage): number | null {
  const match = RESPONSE_LINE.exec(m.startLine);
  return match ? Number(match[1]) : null;
}

/** Sets a request's start line to `method uri`, keeping its RTSP version. */
export function setRequestLine(m: RtspMessage, method: string, uri: string): void {
  m.startLine = `${method} ${uri} ${m.startLine.slice(m.startLine.lastIndexOf(' ') + 1)}`;
}

export function header(m: RtspMessage, name: string): string | undefined {
  const lower = name.toLowerCase();
  return m.headers.find(([k]) => k.toLowerCase() === lower)?.[1];
}

export function headersNamed(m: RtspMessage, name: string): string[] {
  const lower = name.toLowerCase();
  return m.headers.filter(([k]) => k.toLowerCase() === lower).map(([, v]) => v);
}

/** Sets (in place of the first one, removing the others) or removes a header. */
export function setHeader(m: RtspMessage, name: string, value: string | null): void {
  const lower = name.toLowerCase();
  const first = m.headers.findIndex(([k]) => k.toLowerCase() === lower);
  if (first < 0) {
    if (value !== null) m.headers.push([name, value]);
    return;
  }
  const key = m.headers[first]![0];
  m.headers = m.headers.filter(([k]) => k.toLowerCase() !== lower);
  if (value !== null) m.headers.splice(first, 0, [key, value]);
}

export function serialize(m: RtspMessage): Buffer {
  const headers = m.headers.filter(([k]) => k.toLowerCase() !== 'content-length');
  if (m.body.length > 0 || header(m, 'content-length') !== undefined) headers.push(['Content-Length', String(m.body.length)]);
  const head = Buffer.from(`${m.startLine}\r\n${headers.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`, 'utf8');
  return m.body.length > 0 ? Buffer.concat([head, m.body]) : head;
}

export interface FramerSink {
  /** Raw bytes of interleaved frames (header and payload, possibly split): forward as they are. */
  binary(bytes: Buffer): void;
  message(m: RtspMessage): void;
  error(reason: string): void;
}

/**
 * The RTSP stream framing, incremental. Interleaved frames are handed on as slices of the input as
 * soon as bytes arrive (no buffering of payloads); text messages are collected until complete.
 */
export class RtspFramer {
  private frameRemaining = 0;
  private readonly frameHeader = Buffer.alloc(4);
  private frameHeaderHave = 0;
  private text: Buffer | null = null;
  private head: { message: RtspMessage; headerBytes: number; bodyBytes: number } | null = null;
  private failed = false;

  constructor(private readonly sink: FramerSink) {}

  /** Stop handing anything on (the connection is being closed). */
  stop(): void {
    this.failed = true;
  }

  push(chunk: Buffer): void {
    let buf = chunk;
    let off = 0;
    while (!this.failed && off < buf.length) {
      if (this.frameRemaining > 0) {
        const n = Math.min(this.frameRemaining, buf.length - off);
        this.frameRemaining -= n;
        this.sink.binary(buf.subarray(off, off + n));
        off += n;
      } else if (this.frameHeaderHave > 0) {
        while (this.frameHeaderHave < 4 && off < buf.length) this.frameHeader[this.frameHeaderHave++] = buf[off++]!;
        if (this.frameHeaderHave === 4) {
          this.frameHeaderHave = 0;
          this.frameRemaining = this.frameHeader.readUInt16BE(2);
          this.sink.binary(Buffer.from(this.frameHeader));
        }
      } else if (this.text === null && (buf[off] === 0x0d || buf[off] === 0x0a)) {
        off++; // empty lines between messages
      } else if (this.text === null && buf[off] === 0x24) {
        const available = buf.length - off;
        if (available >= 4) {
          const total = 4 + buf.readUInt16BE(off + 2);
          const n = Math.min(total, available);
          this.frameRemaining = total - n;
          this.sink.binary(buf.subarray(off, off + n));
          off += n;
        } else {
          while (off < buf.length) this.frameHeader[this.frameHeaderHave++] = buf[off++]!;
        }
      } else {
        this.text = this.text ? Buffer.concat([this.text, buf.subarray(off)]) : buf.subarray(off);
        off = buf.length;
        const rest = this.extract();
        if (rest === null) return;
        buf = rest;
        off = 0;
      }
    }
  }

  /** Tries to complete the text message in `this.text`; returns the bytes after it, or null (need more / failed). */
  private extract(): Buffer | null {
    const text = this.text!;
    const { maxHeaderBytes, maxBodyBytes } = FRAME_LIMITS;
    if (!this.head) {
      const lineEnd = text.indexOf(0x0a);
      const firstLine = text.subarray(0, lineEnd >= 0 ? lineEnd : Math.min(text.length, 256)).toString('latin1').replace(/\r$/, '');
      const notStartLine = lineEnd >= 0 ? !RESPONSE_LINE.test(firstLine) && !REQUEST_LINE.test(firstLine) : text.length > 1024 || /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/.test(firstLine);
      if (notStartLine) return this.fail(`not an RTSP start line: ${JSON.stringify(firstLine.slice(0, 80))}`);
      const crlf = text.indexOf('\r\n\r\n', 0, 'latin1');
      const lf = text.indexOf('\n\n', 0, 'latin1');
      let end = -1;
      let sep = 0;
      if (crlf >= 0 && (lf < 0 || crlf <= lf)) [end, sep] = [crlf, 4];
      else if (lf >= 0) [end, sep] = [lf, 2];
      if ((end < 0 ? text.length : end) > maxHeaderBytes) return this.fail(`header block over ${maxHeaderBytes} bytes`);
      if (end < 0) return null;
      const lines = text.subarray(0, end).toString('utf8').split(/\r?\n/);
      const startLine = lines.shift()!;
      const headers: Array<[string, string]> = [];
      for (const line of lines) {
        if (/^[ \t]/.test(line) && headers.length > 0) {
          headers[headers.length - 1]![1] += ` ${line.trim()}`;
          continue;
        }
        const colon = line.indexOf(':');
        if (colon <= 0) return this.fail(`malformed header line: ${JSON.stringify(line.slice(0, 80))}`);
        headers.push([line.slice(0, colon).trim(), line.slice(colon + 1).trim()]);
      }
      const message: RtspMessage = { startLine, headers, body: Buffer.alloc(0) };
      const lengthText = header(message, 'content-length');
      let bodyBytes = 0;
      if (lengthText !== undefined) {
        if (!/^\d{1,9}$/.test(lengthText)) return this.fail(`bad Content-Length ${JSON.stringify(lengthText.slice(0, 20))}`);
        bodyBytes = Number(lengthText);
        if (bodyBytes > maxBodyBytes) return this.fail(`Content-Length ${bodyBytes} over ${maxBodyBytes} bytes`);
      }
      this.head = { message, headerBytes: end + sep, bodyBytes };
    }
    const { message, headerBytes, bodyBytes } = this.head;
    if (text.length < headerBytes + bodyBytes) return null;
    message.body = Buffer.from(text.subarray(headerBytes, headerBytes + bodyBytes));
    const rest = text.subarray(headerBytes + bodyBytes);
    this.text = null;
    this.head = null;
    this.sink.message(message);
    return rest;
  }

  private fail(reason: string): null {
    this.failed = true;
    this.text = null;
    this.sink.error(reason);
    return null;
  }
}

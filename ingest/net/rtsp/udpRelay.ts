/**
 * RTP over UDP without letting a camera aim datagrams anywhere: for each UDP SETUP the relay owns two
 * port pairs (one facing the camera, one on 127.0.0.1 facing ffmpeg), rewrites the Transport header
 * both ways so each side only ever learns the relay's ports (the server's `source=` / `destination=`
 * are dropped, multicast is refused), and forwards datagrams only between ffmpeg's client ports and
 * the camera's checked address at the server ports it announced; anything else is dropped.
 */
import dgram from 'node:dgram';
import net from 'node:net';

interface TransportSpec {
  protocol: string; // RTP/AVP, RTP/AVP/UDP, RTP/AVP/TCP ...
  params: Array<[string, string | null]>;
}

function parseTransport(value: string): TransportSpec[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((spec) => {
      const [protocol = '', ...rest] = spec.split(';').map((s) => s.trim());
      return {
        protocol,
        params: rest.filter(Boolean).map((p): [string, string | null] => {
          const eq = p.indexOf('=');
          return eq < 0 ? [p.toLowerCase(), null] : [p.slice(0, eq).trim().toLowerCase(), p.slice(eq + 1).trim()];
        }),
      };
    });
}

const formatTransport = (specs: TransportSpec[]) => specs.map((s) => [s.protocol, ...s.params.map(([k, v]) => (v === null ? k : `${k}=${v}`))].join(';')).join(',');
const param = (s: TransportSpec, name: string) => s.params.find(([k]) => k === name)?.[1];
const hasParam = (s: TransportSpec, name: string) => s.params.some(([k]) => k === name);
const isTcp = (s: TransportSpec) => /\/TCP$/i.test(s.protocol) || hasParam(s, 'interleaved');

function portRange(text: string | null | undefined): [number, number] | null {
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(text ?? '');
  if (!m) return null;
  const a = Number(m[1]);
  const b = m[2] !== undefined ? Number(m[2]) : a + 1;
  return a > 0 && a < 65536 && b > 0 && b < 65536 ? [a, b] : null;
}

/** An IPv4-mapped IPv6 address (::ffff:a.b.c.d) as plain IPv4; any other address unchanged. */
export const plainAddress = (address: string) => address.replace(/^::ffff:(?=\d+\.)/i, '');

/**
 * What ffmpeg's SETUP Transport asks of the relay: nothing (interleaved TCP only), UDP to its client
 * ports, or something refused with 461 (multicast, a destination, a UDP spec without client ports).
 */
export function udpRequest(transport: string): { clientPorts: [number, number] } | 'tcp' | 'refuse' {
  const specs = parseTransport(transport);
  if (specs.some((s) => hasParam(s, 'multicast') || hasParam(s, 'destination'))) return 'refuse';
  const udpSpec = specs.find((s) => !isTcp(s));
  if (!udpSpec) return 'tcp';
  const clientPorts = portRange(param(udpSpec, 'client_port'));
  return clientPorts ? { clientPorts } : 'refuse';
}

export interface DatagramCounters {
  datagramsDown: number;
  datagramsUp: number;
  datagramsDropped: number;
}

/** One UDP media track (RTP and RTCP) relayed between ffmpeg's client ports and the camera. */
export class UdpTrack {
  private closed = false;

  private constructor(
    private readonly clientPorts: [number, number],
    /** Facing the camera. */
    private readonly up: [dgram.Socket, dgram.Socket],
    /** On 127.0.0.1, facing ffmpeg. */
    private readonly down: [dgram.Socket, dgram.Socket],
  ) {
    for (const s of [...up, ...down]) s.on('error', () => {});
  }

  /** Binds the relay's two port pairs; the camera-facing one in `upstreamAddress`'s family. */
  static async open(upstreamAddress: string, clientPorts: [number, number]): Promise<UdpTrack> {
    const family = net.isIPv6(upstreamAddress) ? 'udp6' : 'udp4';
    const up = await bindPair(family, family === 'udp6' ? '::' : '0.0.0.0');
    try {
      return new UdpTrack(clientPorts, up, await bindPair('udp4', '127.0.0.1'));
    } catch (error) {
      up.forEach((s) => s.close());
      throw error;
    }
  }

  /** ffmpeg's SETUP Transport for the camera: the camera is to send to the relay's camera-facing ports. */
  upstreamTransport(transport: string): string {
    const ports = `${this.up[0].address().port}-${this.up[1].address().port}`;
    const specs = parseTransport(transport).map((s): TransportSpec => (isTcp(s) ? s : { protocol: s.protocol, params: s.params.map(([k, v]) => [k, k === 'client_port' ? ports : v]) }));
    return formatTransport(specs);
  }

  /**
   * Starts relaying as the camera's SETUP answer says (its `transport` header, `remote` its checked
   * address); returns the Transport to give ffmpeg, or null when the answer is unusable (461).
   * `onDown` is called for every datagram relayed from the camera.
   */
  start(transport: string | undefined, remote: string, counters: DatagramCounters, onDown: () => void): string | null {
    if (transport === undefined) return null;
    const spec = parseTransport(transport)[0];
    if (!spec || isTcp(spec) || hasParam(spec, 'multicast')) return null;
    const serverPorts = portRange(param(spec, 'server_port'));
    if (!serverPorts) return null;
    const forward = (from: dgram.Socket, to: dgram.Socket, expectAddress: string, expectPort: number, toAddress: string, toPort: number, down: boolean) => {
      from.on('message', (msg, rinfo) => {
        if (this.closed) return;
        if (plainAddress(rinfo.address) !== expectAddress || rinfo.port !== expectPort) {
          counters.datagramsDropped++;
          return;
        }
        if (down) {
          counters.datagramsDown++;
          onDown();
        } else counters.datagramsUp++;
        try {
          to.send(msg, toPort, toAddress);
        } catch {
          // socket closed meanwhile
        }
      });
    };
    const [cRtp, cRtcp] = this.clientPorts;
    forward(this.up[0], this.down[0], remote, serverPorts[0], '127.0.0.1', cRtp, true);
    forward(this.up[1], this.down[1], remote, serverPorts[1], '127.0.0.1', cRtcp, true);
    forward(this.down[0], this.up[0], '127.0.0.1', cRtp, remote, serverPorts[0], false);
    forward(this.down[1], this.up[1], '127.0.0.1', cRtcp, remote, serverPorts[1], false);
    const keep = new Set(['ssrc', 'mode', 'ttl']);
    const params: Array<[string, string | null]> = [
      ['unicast', null],
      ['client_port', `${cRtp}-${cRtcp}`],
      ['server_port', `${this.down[0].address().port}-${this.down[1].address().port}`],
      ...spec.params.filter(([k]) => keep.has(k)),
    ];
    return formatTransport([{ protocol: spec.protocol, params }]);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of [...this.up, ...this.down]) {
      try {
        s.close();
      } catch {
        // already closed
      }
    }
  }
}

/** Two UDP sockets on consecutive ports (even RTP, odd RTCP), as RTP clients and servers expect. */
async function bindPair(type: 'udp4' | 'udp6', address: string): Promise<[dgram.Socket, dgram.Socket]> {
  const bind = (port: number) =>
    new Promise<dgram.Socket>((resolve, reject) => {
      const s = dgram.createSocket({ type, reuseAddr: false });
      s.once('error', (e) => {
        s.close();
        reject(e);
      });
      s.bind(port, address, () => {
        s.removeAllListeners('error');
        resolve(s);
      });
    });
  let lastError: unknown = null;
  for (let attempt = 0; attempt < 40; attempt++) {
    let rtp: dgram.Socket;
    try {
      rtp = await bind(0);
    } catch (e) {
      lastError = e;
      continue;
    }
    const port = rtp.address().port;
    if (port % 2 !== 0 || port >= 65535) {
      rtp.close();
      continue;
    }
    try {
      return [rtp, await bind(port + 1)];
    } catch (e) {
      lastError = e;
      rtp.close();
    }
  }
  throw new Error(`cannot bind a UDP port pair: ${(lastError as Error | null)?.message ?? 'no even port'}`);
}

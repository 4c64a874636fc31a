import net from 'node:net';
import { VigilError } from '../../common/errors.js';

/**
 * Address ranges a source from an API caller may not reach unless the operator allows them:
 * loopback, private (RFC 1918), link-local (cloud metadata lives at 169.254.169.254), carrier-grade
 * NAT, "this network", IETF protocol assignments, benchmarking, multicast and reserved, unique-local,
 * link-local and multicast IPv6. Otherwise the service becomes a proxy into the network it runs in
 * (SSRF): ffmpeg would fetch whatever the media points at.
 */
export const PRIVATE_RANGES = [
  '0.0.0.0/8',
  '10.0.0.0/8',
  '100.64.0.0/10',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.0.0.0/24',
  '192.168.0.0/16',
  '198.18.0.0/15',
  '224.0.0.0/4',
  '240.0.0.0/4',
  '::/128',
  '::1/128',
  'fc00::/7',
  'fe80::/10',
  'ff00::/8',
] as const;

/** A set of CIDR ranges ("10.0.0.0/8", "::1/128", or a bare address) that can say whether it holds an address. */
export class AddressSet {
  private readonly list = new net.BlockList();
  readonly ranges: readonly string[];

  constructor(ranges: readonly string[]) {
    for (const range of ranges) addRange(this.list, range);
    this.ranges = [...ranges];
  }

  /** Whether the address, or the IPv4 address an IPv6 spelling embeds (mapped, NAT64, 6to4), is in the set. */
  has(address: string): boolean {
    return spellings(address).some(([plain, family]) => this.list.check(plain, family));
  }
}

/** Checks a CIDR string; throws BAD_CONFIG naming it when it is not one. */
export function checkRange(range: string): string {
  addRange(new net.BlockList(), range);
  return range;
}

function addRange(list: net.BlockList, range: string): void {
  const [address = '', prefixText, extra] = range.trim().split('/');
  const family = net.isIP(address);
  const max = family === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (family === 0 || extra !== undefined || !Number.isInteger(prefix) || prefix < 0 || prefix > max) {
    throw new VigilError('BAD_CONFIG', `"${range}" is not an IP address or CIDR range (e.g. 192.168.1.0/24, 127.0.0.1, ::1/128)`);
  }
  list.addSubnet(address, prefix, family === 4 ? 'ipv4' : 'ipv6');
}

/**
 * The forms an address must be checked in: itself, plus the IPv4 address that an IPv6 spelling
 * carries (::ffff:a.b.c.d and ::ffff:7f00:1 mapped, ::a.b.c.d compatible, 64:ff9b::/96 NAT64,
 * 2002::/16 6to4), since those reach the IPv4 host on dual-stack or translating networks.
 */
export function spellings(address: string): Array<[string, 'ipv4' | 'ipv6']> {
  const plain = address.replace(/^\[(.*)\]$/, '$1').replace(/%.*$/, '');
  const family = net.isIP(plain);
  if (family === 4) return [[plain, 'ipv4']];
  if (family !== 6) return [];
  const out: Array<[string, 'ipv4' | 'ipv6']> = [[plain, 'ipv6']];
  const v4 = embeddedV4(ipv6Bytes(plain));
  if (v4) out.push([v4, 'ipv4']);
  return out;
}

function embeddedV4(b: Uint8Array): string | null {
  const zeros = (from: number, to: number) => b.subarray(from, to).every((x) => x === 0);
  const v4 = (at: number) => `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
  if (zeros(0, 10) && b[10] === 0xff && b[11] === 0xff) return v4(12); // ::ffff:0:0/96
  if (zeros(0, 12) && !zeros(12, 16)) return v4(12); // ::a.b.c.d (deprecated "compatible")
  if (b[0] === 0x00 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && zeros(4, 12)) return v4(12); // 64:ff9b::/96
  if (b[0] === 0x20 && b[1] === 0x02) return v4(2); // 2002::/16
  return null;
}

/** 16 bytes of a valid IPv6 address (net.isIP already said it is one). */
function ipv6Bytes(text: string): Uint8Array {
  const bytes = new Uint8Array(16);
  let head = text;
  const tailV4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  const wordsOf = (part: string) => (part === '' ? [] : part.split(':').map((w) => parseInt(w, 16)));
  if (tailV4) head = text.slice(0, -tailV4[1]!.length) + '0:0';
  const [left = '', right] = head.split('::');
  const l = wordsOf(left);
  const r = right === undefined ? [] : wordsOf(right);
  const words = [...l, ...new Array<number>(8 - l.length - r.length).fill(0), ...r];
  words.forEach((w, i) => {
    bytes[2 * i] = w >> 8;
    bytes[2 * i + 1] = w & 0xff;
  });
  if (tailV4) tailV4[1]!.split('.').forEach((octet, i) => (bytes[12 + i] = Number(octet)));
  return bytes;
}

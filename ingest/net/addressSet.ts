import net from 'node:net';
import { VigilError } from '../../../common/errors.js';

/**
 * Address ranges a source URL from an API caller may not reach unless the operator allows them:
 * loopback, private (RFC 1918), link-local (cloud metadata lives at 169.254.169.254), carrier-grade
 * NAT, "this network", unique-local and link-local IPv6. Otherwise the service becomes a proxy into
 * the network it runs in (SSRF): ffmpeg would fetch whatever URL it is given.
 */
export const PRIVATE_RANGES = [
  '0.0.0.0/8',
  '10.0.0.0/8',
  '100.64.0.0/10',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.168.0.0/16',
  '::/128',
  '::1/128',
  'fc00::/7',
  'fe80::/10',
] as const;

/** A set of CIDR ranges ("10.0.0.0/8", "::1/128", or a bare address) that can say whether it holds an address. */
export class AddressSet {
  private readonly list = new net.BlockList();
  readonly ranges: readonly string[];

  constructor(ranges: readonly string[]) {
    for (const range of ranges) addRange(this.list, range);
    this.ranges = [...ranges];
  }

  has(address: string): boolean {
    const plain = unmapV4(address);
    const family = net.isIP(plain);
    if (family === 0) return false;
    return this.list.check(plain, family === 4 ? 'ipv4' : 'ipv6');
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

/** ::ffff:10.0.0.1 is 10.0.0.1: a mapped address must not slip past the IPv4 ranges. */
function unmapV4(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m ? m[1]! : address;
}

/**
 * One MQTT broker that alerts are published to: its checked configuration and where it leads
 * (docs/notifications.md, "MQTT"). Nothing here puts the password or the URL's path into a
 * message: `display` is the URL's scheme, host and port only.
 */
import { VigilError } from '../../../common/errors.js';
import type { OutboundPolicy } from '../../../ingest/net/outboundPolicy.js';

export interface MqttConfig {
  /** Stable id (letters, digits, . _ - : up to 64), unique among webhooks and brokers: a watch's `notify` names it. */
  id: string;
  /** mqtt://host[:1883] or mqtts://host[:8883]; no user:password (use `username` / `password`). */
  url: string;
  /** First topic level(s): alerts go to `<prefix>/<stream>/alerts`. Default "vigil". */
  topicPrefix?: string;
  username?: string;
  password?: string;
  /** mqtts: PEM certificate(s) to trust instead of the system's CAs (a broker with a private CA). */
  ca?: string;
  /** QoS of alert publications: 1 (default; delivered = the broker's PUBACK) or 0 (delivered = written to the socket). */
  qos?: 0 | 1;
}

export interface CheckedMqtt {
  id: string;
  host: string;
  port: number;
  tls: boolean;
  /** Safe to print: scheme, host and port (no path, credentials). */
  display: string;
  topicPrefix: string;
  qos: 0 | 1;
  username?: string;
  password?: string;
  ca?: string;
}

const ID_PATTERN = /^[A-Za-z0-9._:-]{1,64}$/;
/** Topic levels of letters, digits, "_", "-" and "." separated by "/": no wildcards (+ #), no empty level, no leading "$". */
export const TOPIC_PREFIX = /^[A-Za-z0-9_.-]{1,64}(\/[A-Za-z0-9_.-]{1,64}){0,7}$/;

/** Checks a broker's configuration (syntax only; `checkMqttAddress` checks where it leads). BAD_CONFIG naming the broker by id. */
export function checkMqtt(config: MqttConfig): CheckedMqtt {
  if (typeof config.id !== 'string' || !ID_PATTERN.test(config.id)) {
    throw new VigilError('BAD_CONFIG', 'an MQTT broker id must be 1-64 letters, digits, ".", "_", "-" or ":"');
  }
  const url = parseMqttUrl(config.url, `MQTT broker "${config.id}"`, 'BAD_CONFIG');
  if (url.username || url.password) {
    throw new VigilError('BAD_CONFIG', `MQTT broker "${config.id}": the URL may not carry user:password (name environment variables with usernameEnv / passwordEnv)`);
  }
  const topicPrefix = config.topicPrefix ?? 'vigil';
  if (typeof topicPrefix !== 'string' || !TOPIC_PREFIX.test(topicPrefix) || topicPrefix.startsWith('$')) {
    throw new VigilError('BAD_CONFIG', `MQTT broker "${config.id}": topicPrefix must be topic levels of letters, digits, "_", "-" or "." separated by "/" (no wildcards)`);
  }
  const qos = config.qos ?? 1;
  if (qos !== 0 && qos !== 1) throw new VigilError('BAD_CONFIG', `MQTT broker "${config.id}": qos must be 0 or 1`);
  if (config.password !== undefined && config.username === undefined) {
    throw new VigilError('BAD_CONFIG', `MQTT broker "${config.id}": a password needs a username`);
  }
  if (config.ca !== undefined && (typeof config.ca !== 'string' || !config.ca.includes('-----BEGIN CERTIFICATE-----'))) {
    throw new VigilError('BAD_CONFIG', `MQTT broker "${config.id}": ca must be PEM certificate text`);
  }
  const tls = url.protocol === 'mqtts:';
  return {
    id: config.id,
    host: url.hostname,
    port: url.port === '' ? (tls ? 8883 : 1883) : Number(url.port),
    tls,
    display: `${url.protocol}//${url.host}`,
    topicPrefix,
    qos,
    ...(config.username !== undefined ? { username: config.username } : {}),
    ...(config.password !== undefined ? { password: config.password } : {}),
    ...(config.ca !== undefined ? { ca: config.ca } : {}),
  };
}

/**
 * Where the broker's URL leads, checked now (at startup, for a clear error before any connection):
 * SOURCE_FORBIDDEN when any address of its host is refused, SOURCE_UNREACHABLE when it does not
 * resolve. Every connection (the first and every reconnect) is checked again.
 */
export async function checkMqttAddress(url: string, policy: OutboundPolicy): Promise<void> {
  const u = parseMqttUrl(url, 'the MQTT broker', 'BAD_INPUT');
  await policy.resolve(u.hostname, `${u.protocol}//${u.host}`);
}

function parseMqttUrl(text: string, what: string, code: 'BAD_CONFIG' | 'BAD_INPUT'): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new VigilError(code, `${what}: the URL is not a valid URL`);
  }
  if (url.protocol !== 'mqtt:' && url.protocol !== 'mqtts:') throw new VigilError(code, `${what}: only mqtt:// and mqtts:// URLs are allowed (got ${url.protocol})`);
  if (url.hostname === '') throw new VigilError(code, `${what}: the URL has no host`);
  return url;
}

/**
 * At startup, before any connection: each broker's configuration and where its URL leads, with the
 * URL policy API callers' sources obey. BAD_CONFIG naming the broker (by id, scheme, host and port)
 * when refused; a host that does not resolve now is only logged (every connection checks again).
 */
export async function checkMqttBrokers(brokers: readonly MqttConfig[], policy: OutboundPolicy, log: (line: string) => void): Promise<void> {
  for (const broker of brokers) {
    const checked = checkMqtt(broker);
    try {
      await policy.resolve(checked.host, checked.display);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      if (error instanceof VigilError && error.code === 'SOURCE_UNREACHABLE') {
        log(`mqtt ${checked.id} (${checked.display}): ${message}; the client will try again`);
        continue;
      }
      throw new VigilError('BAD_CONFIG', `MQTT broker "${checked.id}" (${checked.display}) is refused by the URL policy: ${message}`, { cause: error });
    }
  }
}

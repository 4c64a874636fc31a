/**
 * Headless Chromium for the web page tests (Debian's chromium driven by playwright-core). Needs
 * /usr/bin/chromium (`apt-get install chromium`); a test skips loudly without it, except in CI
 * (CI=true), where a missing browser fails it.
 */
import fs from 'node:fs';
import { type Browser, chromium, type ConsoleMessage } from 'playwright-core';

export const CHROMIUM = process.env.VIGIL_CHROMIUM ?? '/usr/bin/chromium';
// The closed network here refuses Chromium's background connections: switch them all off.
export const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export function requireChromium(t: { skip(message?: string): void }): boolean {
  if (fs.existsSync(CHROMIUM)) return true;
  const reason = `Chromium not found at ${CHROMIUM} (apt-get install chromium)`;
  if (process.env.CI === 'true') throw new Error(`CI=true and ${reason}`);
  process.stderr.write(`\n*** SKIPPING BROWSER TEST: ${reason} ***\n\n`);
  t.skip(reason);
  return false;
}

/** Playwright starts Chromium with a new, empty profile (user data dir) of its own. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS, timeout: 60_000 });
}

/**
 * Console errors the page causes on purpose: requests refused before the token is entered (401),
 * and the cluster panel's probe of a server that is not in a cluster (404 from /v1/cluster).
 */
export function isExpectedConsoleError(message: ConsoleMessage): boolean {
  const text = message.text();
  return /status of 401/.test(text) || (/status of 404/.test(text) && new URL(message.location().url).pathname === '/v1/cluster');
}

/**
 * The web page in headless Chromium (Debian's chromium driven by playwright-core): enter the token,
 * add a stream from a probe clip, watch it reach "ended" with a live thumbnail, ask the needle
 * question, and see the streamed answer and the evidence thumbnails with their times.
 *
 * Needs /usr/bin/chromium (`apt-get install chromium`); skipped loudly without it, except in CI
 * (CI=true), where a missing browser fails the test.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import request from 'supertest';
import { disposeSharedModel, makeClips, startTestServer, type TestServer, TOKEN, waitEnded } from '../api/helpers.js';
import { streamClock } from '../../src/engine/memoryHorizon.js';
import { isExpectedConsoleError, launchChromium, requireChromium } from './browser.js';

describe('web page', () => {
  let server: TestServer;
  let browser: Browser | null = null;

  before(async () => {
    const clips = await makeClips();
    // The manager's default gate (the helper's is off): the red screen (10-13 s) is one picture, so
    // its chunk at 10 s spans 10-12 and the page shows the span.
    server = await startTestServer({ filesDir: clips, manager: { defaults: {} } });
  });
  after(async () => {
    await browser?.close();
    await server?.close();
    await disposeSharedModel();
  });

  it('adds a stream from a probe clip, asks a needle question, shows the answer and the evidence', async (t) => {
    if (!requireChromium(t)) return;
    browser = await launchChromium();
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error' && !isExpectedConsoleError(message)) problems.push(`console: ${message.text()}`);
    });
    page.setDefaultTimeout(30_000);

    await page.goto(server.url);
    await page.getByText('this server needs a token').waitFor();
    await page.fill('#token', TOKEN);
    await page.click('#token-form button');
    await page.getByText('connected').waitFor();

    await page.fill('#source', 'a.mp4');
    await page.fill('#name', 'Needle clip');
    await page.fill('#window', '4');
    await page.click('#add-form button[type=submit]');
    const card = page.locator('#streams li.stream');
    await card.locator('.title', { hasText: 'Needle clip' }).waitFor();
    await card.locator('.state', { hasText: 'ended' }).waitFor();
    await assert.doesNotReject(card.locator('img[src^="blob:"]').waitFor(), 'the card shows the latest thumbnail');
    // 40 sampled frames, 2 of them gated (the red screen's 2nd and 3rd seconds).
    assert.match(await card.locator('.figures').innerText(), /38 chunks/);
    assert.match(await card.locator('.figures').innerText(), /2 gated/);

    await page.fill('#question', 'What color was the square on the red screen?');
    await page.fill('#r', '4');
    await page.click('#ask-button');
    await page.locator('#answer', { hasText: 'green' }).waitFor();
    assert.equal((await page.locator('#answer').innerText()).trim(), 'green');
    await page.locator('#answer-timing', { hasText: 'first token' }).waitFor();

    const strongest = page.locator('#evidence figure.strong');
    await strongest.first().waitFor();
    const captions = await strongest.locator('figcaption').allInnerTexts();
    assert.ok(captions.some((c) => /^0:10–0:12 /.test(c)), `the needle chunk, spanning 0:10-0:12, is the strong evidence: ${captions.join(' | ')}`);
    // The evidence pictures are real images, fetched with the token.
    // (A string, evaluated in the page: this file is type-checked without the DOM library.)
    await page.waitForFunction("[...document.querySelectorAll('#evidence figure.strong img')].every((img) => img.complete && img.naturalWidth > 0)");

    // Outages: this clip has none (test/api/gaps.test.ts makes real ones over RTSP), so the server's
    // own responses are passed through with one added, to check how the page shows them.
    assert.match(await card.locator('.figures').innerText(), /0 gaps/);
    const gap = { from: 5, to: 9, reason: 'camera unreachable' };
    await page.route('**/v1/streams', async (route) => {
      const response = await route.fetch();
      const body = (await response.json()) as { streams: Array<{ memory: { gaps: number; lastGap: unknown } | null }> };
      for (const s of body.streams) if (s.memory) Object.assign(s.memory, { gaps: 1, lastGap: gap });
      await route.fulfill({ response, json: body });
    });
    await card.locator('.gaps', { hasText: 'last gap: not recorded 0:05–0:09: camera unreachable' }).waitFor();
    assert.match(await card.locator('.figures').innerText(), /1 gap\b/);
    await page.route('**/v1/streams/*/questions', async (route) => {
      const response = await route.fetch();
      const text = (await response.text()).replace(/^event: evidence\ndata: (.*)$/m, (_line, data: string) => {
        const answer = JSON.parse(data) as { evidence: unknown[]; skipped: unknown[] };
        answer.evidence.push({ gap });
        answer.skipped.push({ t: 7, reason: 'checksum mismatch' });
        return `event: evidence\ndata: ${JSON.stringify(answer)}`;
      });
      await route.fulfill({ response, body: text });
    });
    await page.click('#ask-button');
    await page.locator('#evidence figure.gap', { hasText: 'not recorded 0:05–0:09: camera unreachable' }).waitFor();
    await page.locator('#answer-timing', { hasText: '1 gap in the timeline' }).waitFor();
    assert.match(await page.locator('#answer-timing').innerText(), /1 damaged chunk left out \(0:07\)/);
    assert.ok((await page.locator('#evidence figure.strong').count()) > 0, 'the chunk evidence is still shown beside the gap');
    await page.unrouteAll();

    const shot = process.env.VIGIL_PAGE_SCREENSHOT ?? path.join(server.dataDir, 'page.png');
    await page.screenshot({ path: shot, fullPage: true });
    assert.ok(fs.statSync(shot).size > 1000);
    assert.deepEqual(problems, []);
  });

  it('shows each stream\'s memory horizon as a bar (kept span, what the budget forgot, outages) and states a forgotten time', async (t) => {
    if (!requireChromium(t)) return;
    browser ??= await launchChromium();
    // A small budget (4 frames a second, ~9.5 kB a chunk, 400 kB) without tiers forgets the clip's first seconds.
    await request(server.url).post('/v1/streams').set({ Authorization: `Bearer ${TOKEN}` }).send({ id: 'small', source: 'a.mp4', fps: 4, window: 2, gate: 'off', budget: '400kB', tiers: { kvShare: 1, archive: false } }).expect(201);
    await waitEnded(server, 'small', 60_000);
    const h = server.ready.status('small').memory!.horizon;
    assert.ok(h.forgottenBefore !== null && h.from! > 13, JSON.stringify(h));

    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.setDefaultTimeout(30_000);
    await page.goto(server.url);
    await page.fill('#token', TOKEN);
    await page.click('#token-form button');
    await page.getByText('connected').waitFor();

    const small = page.locator('#streams li.stream[data-stream-id="small"]');
    await small.locator('.horizon-text', { hasText: `forgotten before ${streamClock(h.forgottenBefore)} (${h.forgottenChunks} chunks)` }).waitFor();
    assert.equal(await small.locator('.horizon-text').innerText(), `memory ${streamClock(h.from!)}–${streamClock(h.to!)} · kv-float32 · forgotten before ${streamClock(h.forgottenBefore)} (${h.forgottenChunks} chunks)`);
    // Laid out by the browser: the hatched forgotten part is from/to of the bar, the kept span the rest.
    const bar = (await small.locator('.horizon-bar').boundingBox())!;
    const forgotten = (await small.locator('.horizon-bar .forgotten').boundingBox())!;
    const kept = (await small.locator('.horizon-bar .span.kv-float32').boundingBox())!;
    assert.ok(Math.abs(forgotten.width / bar.width - h.from! / h.to!) < 0.02, `forgotten ${forgotten.width} of ${bar.width} px, expected ${h.from! / h.to!}`);
    assert.ok(Math.abs((kept.x - bar.x) / bar.width - h.from! / h.to!) < 0.02 && Math.abs(kept.x + kept.width - (bar.x + bar.width)) < 1.5, 'the kept span runs from the horizon to the end');
    const needleClip = page.locator('#streams li.stream', { hasText: 'Needle clip' });
    assert.match(await needleClip.locator('.horizon-text').innerText(), /^memory 0:00–0:39 · kv-float32$/);
    assert.equal(await needleClip.locator('.horizon-bar .forgotten').count(), 0);

    // A question about the forgotten red screen: the statement, and the page says no model ran.
    await page.selectOption('#ask-stream', 'small');
    await page.fill('#question', 'What color was the square on the red screen?');
    await page.fill('#from', '10');
    await page.fill('#to', '13');
    await page.click('#ask-button');
    await page.locator('#answer', { hasText: 'I no longer have memory of 0:10–0:13' }).waitFor();
    await page.locator('#answer-timing', { hasText: 'not in memory: no model call' }).waitFor();

    // Outages inside the horizon (real ones: test/api/horizon.test.ts), injected into the server's response.
    const gap = { from: 20, to: 24, reason: 'camera unreachable' };
    await page.route('**/v1/streams', async (route) => {
      const response = await route.fetch();
      const body = (await response.json()) as { streams: Array<{ id: string; memory: { horizon: { gaps: unknown[] } } | null }> };
      // Inside the needle clip's horizon (0:00-0:39); the small stream's starts after it.
      for (const s of body.streams) if (s.memory && s.id !== 'small') s.memory.horizon.gaps = [gap];
      await route.fulfill({ response, json: body });
    });
    await needleClip.locator('.horizon-text', { hasText: '1 gap' }).waitFor();
    assert.equal(await needleClip.locator('.horizon-bar .gap').getAttribute('title'), 'not recorded 0:20–0:24: camera unreachable');
    await page.unrouteAll();
    if (process.env.VIGIL_HORIZON_SCREENSHOT) await page.screenshot({ path: process.env.VIGIL_HORIZON_SCREENSHOT, fullPage: true });
    assert.deepEqual(problems, []);
  });
});

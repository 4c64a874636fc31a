/**
 * The web page's timeline, watches and live alerts in headless Chromium (issue 17): a stream from
 * the needle clip (a.mp4: a green square on a red screen at 10-13 s) is held before its first frame
 * (as in test/api/watches.test.ts) while a watch is added through the page; then the clip is
 * ingested and the watch's alert must appear on the page live, over the alert event stream, with
 * no reload. The timeline must show the scenes (the gated red screen as one 10-12 s scene), tiers,
 * the alert marker and thumbnails at their own aspect ratio; clicking the red scene asks about
 * 10-12 s and shows the answer and its evidence; the watch is deleted through the page. The alert's
 * row shows its evidence thumbnail at its own aspect ratio, and the watch's stats count the alert. A
 * health watch is added through the page (the kind selector shows its fields) and listed with its
 * condition. Screenshots are checked: PNG of the viewport's size, and the timeline's box not blank
 * (pixel variance).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import sharp from 'sharp';
import request from 'supertest';
import { VigilError } from '../../common/errors.js';
import { AUTH, disposeSharedModel, makeClips, question, startTestServer, type TestServer, TOKEN, waitEnded, waitFor } from '../api/helpers.js';
import { isExpectedConsoleError, launchChromium, requireChromium } from './browser.js';

const VIEWPORT = { width: 1280, height: 800 };

/** Every visible <img> matched: loaded, and its rendered box has the picture's own aspect ratio. */
async function assertAspectKept(page: Page, selector: string): Promise<number> {
  // A string, evaluated in the page: this file is type-checked without the DOM library.
  const boxes = (await page.evaluate(`[...document.querySelectorAll(${JSON.stringify(selector)})].filter((img) => img.complete && img.naturalWidth > 0).map((img) => { const r = img.getBoundingClientRect(); return { w: r.width, h: r.height, nw: img.naturalWidth, nh: img.naturalHeight }; })`)) as Array<{ w: number; h: number; nw: number; nh: number }>;
  assert.ok(boxes.length > 0, `no loaded picture matches ${selector}`);
  for (const b of boxes) {
    const drawn = b.w / b.h;
    const natural = b.nw / b.nh;
    assert.ok(Math.abs(drawn - natural) / natural < 0.05, `${selector}: drawn ${b.w.toFixed(1)}x${b.h.toFixed(1)}, the picture is ${b.nw}x${b.nh}`);
  }
  return boxes.length;
}

/** A screenshot: a PNG of the viewport's size whose `box` region is not blank. */
async function checkScreenshot(file: string, box: { x: number; y: number; width: number; height: number }): Promise<void> {
  const png = fs.readFileSync(file);
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'a PNG');
  const meta = await sharp(png).metadata();
  assert.deepEqual([meta.width, meta.height], [VIEWPORT.width, VIEWPORT.height]);
  const region = { left: Math.max(0, Math.floor(box.x)), top: Math.max(0, Math.floor(box.y)), width: Math.floor(box.width), height: Math.floor(box.height) };
  assert.ok(region.top + region.height <= VIEWPORT.height && region.width > 100 && region.height > 40, `the timeline is in view: ${JSON.stringify(region)}`);
  const stats = await sharp(png).extract(region).stats();
  const stdev = Math.max(...stats.channels.slice(0, 3).map((c) => c.stdev));
  assert.ok(stdev > 20, `the timeline's pixels vary (stdev ${stdev.toFixed(1)}): it is drawn, not blank`);
}

describe('web page: timeline, watches, live alerts', () => {
  let server: TestServer;
  let browser: Browser | null = null;
  let holdFrames = true;

  before(async () => {
    const clips = await makeClips(30);
    server = await startTestServer({
      filesDir: clips,
      // The manager's default gate (the helper's is off): the red screen is one 10-12 s scene.
      manager: {
        defaults: {},
        testFaults: {
          beforeAddFrame: () => {
            if (holdFrames) throw new VigilError('SOURCE_FAILED', 'held back by the test until the watch exists');
          },
        },
      },
    });
  });
  after(async () => {
    await browser?.close();
    await server?.close();
    await disposeSharedModel();
  });

  it('adds a watch, shows its alert live with its thumbnail, draws the timeline, asks about a clicked scene, deletes the watch, adds a health watch', async (t) => {
    if (!requireChromium(t)) return;
    const shots = path.join(server.dataDir, 'screenshots');
    fs.mkdirSync(shots, { recursive: true });
    // Held: the stream fails at its first frame with nothing stored, until the watch exists.
    await request(server.url).post('/v1/streams').set(AUTH).send({ id: 'a', name: 'Needle clip', source: 'a.mp4', window: 4 }).expect(201);
    await waitFor('the held stream to fail', () => server.ready.status('a').state === 'failed');

    browser = await launchChromium();
    const page = await browser.newPage({ viewport: VIEWPORT });
    const problems: string[] = [];
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error' && !isExpectedConsoleError(message)) problems.push(`console: ${message.text()}`);
    });
    let navigations = 0;
    page.on('framenavigated', () => navigations++);
    page.setDefaultTimeout(30_000);
    // An outage on the timeline: this clip has none (real ones: test/api/timeline.test.ts), so one
    // is added to each of the server's timeline responses, to check how the page draws it.
    const GAP = { from: 20, to: 24, reason: 'camera unreachable' };
    await page.route('**/v1/streams/a/timeline', async (route) => {
      const response = await route.fetch();
      const body = (await response.json()) as { gaps: unknown[] };
      body.gaps = [GAP];
      await route.fulfill({ response, json: body });
    });
    await page.goto(server.url);
    await page.fill('#token', TOKEN);
    await page.click('#token-form button');
    await page.getByText('connected').waitFor();
    await page.locator('#alerts-state', { hasText: 'live' }).waitFor();
    assert.equal(await page.locator('#tl-stream').inputValue(), 'a');

    // A watch through the page: it is listed.
    await page.fill('#watch-question', question('red'));
    await page.selectOption('#watch-trigger', 'answer-matches');
    await page.fill('#watch-pattern', 'green');
    await page.fill('#watch-cooldown', '0');
    await page.click('#watch-form button[type=submit]');
    const watch = page.locator('#watches li.watch');
    await watch.filter({ hasText: question('red') }).waitFor();
    assert.match(await watch.innerText(), /answer matches \/green\/ · cooldown 0 s/);
    const listed = (await request(server.url).get('/v1/streams/a/watches').set(AUTH).expect(200)).body.watches;
    assert.equal(listed.length, 1);
    assert.equal(await watch.getAttribute('data-watch-id'), listed[0].id);

    // The clip goes in: the alert appears on the page live, on the event stream, with no reload.
    const loads = navigations;
    holdFrames = false;
    await request(server.url).post('/v1/streams/a/start').set(AUTH).expect(200);
    const live = page.locator('#alerts li.alert.live');
    await live.first().waitFor();
    assert.match(await live.first().innerText(), /a · 0:1[0-3][\s\S]*green/i);
    assert.equal(navigations, loads, 'no reload');
    // The alert's row shows its evidence frame at the picture's own aspect ratio (16:9 here).
    await page.waitForFunction("[...document.querySelectorAll('#alerts li.alert.live img.alert-thumb')].some((img) => img.complete && img.naturalWidth > 0)");
    assert.equal(await assertAspectKept(page, '#alerts li.alert.live img.alert-thumb'), 1);
    // The watch's stats moved with it (the list is read again when one of its alerts arrives).
    await watch.locator('.watch-stats', { hasText: /\b1 alert\b/ }).waitFor();
    await waitEnded(server, 'a');

    // The timeline: 28 scenes (30 frames, 2 gated into the 10-12 s scene), tiers, the gap, the alert marker.
    const track = page.locator('#timeline .tl-track');
    await waitFor('the whole clip on the timeline', async () => (await track.locator('.tl-span').count()) === 28, 20_000);
    await track.locator('.tl-alert').first().waitFor();
    assert.equal(await page.locator('#timeline .tl-tiers .tier.kv-float32').count(), 1);
    const red = track.locator('.tl-span[data-from="10"]');
    assert.equal(await red.getAttribute('data-to'), '12');
    const bar = (await track.boundingBox())!;
    const redBox = (await red.boundingBox())!;
    // The red scene runs 10 s to 13 s (the next scene's start) of 0-29 s.
    assert.ok(Math.abs(redBox.width / bar.width - 3 / 29) < 0.01, `red scene ${redBox.width} of ${bar.width} px`);
    assert.match(await page.locator('#tl-summary').innerText(), /^0:00–0:29 · 28 scenes · 1 gap · 1 alert · kv-float32$/);
    assert.equal(await track.locator('.tl-gap').getAttribute('title'), 'not recorded 0:20–0:24: camera unreachable');
    // Thumbnails load as they scroll into the filmstrip, each at its own aspect ratio (16:9 here).
    await page.waitForFunction("document.querySelectorAll('#timeline .filmstrip img').length === 28 && [...document.querySelectorAll('#timeline .filmstrip img')].slice(0, 8).every((img) => img.complete && img.naturalWidth > 0)");
    assert.ok((await assertAspectKept(page, '#timeline .filmstrip img')) >= 8);

    // The timeline on screen: a screenshot of the viewport, the timeline's box drawn.
    await page.locator('#timeline').scrollIntoViewIfNeeded();
    const shot = path.join(shots, 'timeline.png');
    await page.screenshot({ path: shot });
    await checkScreenshot(shot, (await page.locator('#timeline').boundingBox())!);

    // Clicking the red scene asks about its range (the question box's question) and shows the answer.
    await page.fill('#question', question('red'));
    await page.fill('#r', '4');
    const asked = page.waitForRequest((r) => r.method() === 'POST' && r.url().endsWith('/v1/streams/a/questions'));
    await red.click();
    const body = (await asked).postDataJSON() as { from: number; to: number; question: string };
    assert.deepEqual([body.from, body.to, body.question], [10, 12, question('red')]);
    await page.locator('#answer', { hasText: 'green' }).waitFor();
    await page.locator('#answer-timing', { hasText: 'first token' }).waitFor();
    assert.equal(await page.locator('#from').inputValue(), '10');
    // Evidence: only what contributed (the red scene), its picture at its own aspect ratio.
    const evidence = page.locator('#evidence figure:not(.gap)');
    await evidence.first().waitFor();
    assert.deepEqual(await evidence.locator('figcaption').allInnerTexts(), [await evidence.first().locator('figcaption').innerText()]);
    assert.match(await evidence.first().locator('figcaption').innerText(), /^0:10–0:12 /);
    await page.waitForFunction("[...document.querySelectorAll('#evidence img')].every((img) => img.complete && img.naturalWidth > 0)");
    await assertAspectKept(page, '#evidence img');
    // Deleting the watch through the page: gone from the list and from the API (its alert stays).
    await watch.locator('button.delete').click();
    await waitFor('the watch to leave the list', async () => (await page.locator('#watches li.watch').count()) === 0);
    assert.deepEqual((await request(server.url).get('/v1/streams/a/watches').set(AUTH).expect(200)).body.watches, []);
    assert.equal(await page.locator('#alerts li.alert').count(), 1);

    // A health watch through the page: the kind selector shows its fields (and hides the question's).
    await page.selectOption('#watch-kind', 'health');
    assert.equal(await page.locator('#watch-question').isVisible(), false);
    assert.equal(await page.locator('#watch-pattern').isVisible(), false);
    await page.selectOption('#watch-condition', 'frozen');
    await page.fill('#watch-threshold', '5');
    await page.fill('#watch-cooldown', '');
    await page.click('#watch-form button[type=submit]');
    const health = page.locator('#watches li.watch[data-condition="frozen"]');
    await health.waitFor();
    // Listed with its condition; the file has ended, so it is not judged now.
    assert.match(await health.innerText(), /health: frozen image > 5 s · cooldown 60 s[\s\S]*not judged now/);
    assert.equal(await page.locator('#watch-error').innerText(), '');
    const healthListed = (await request(server.url).get('/v1/streams/a/watches').set(AUTH).expect(200)).body.watches;
    assert.deepEqual(
      healthListed.map((w: { kind: string; condition: string; thresholdSec: number; cooldownSec: number }) => [w.kind, w.condition, w.thresholdSec, w.cooldownSec]),
      [['health', 'frozen', 5, 60]],
    );
    assert.equal(await health.getAttribute('data-watch-id'), healthListed[0].id);
    await page.selectOption('#watch-kind', 'question');
    assert.equal(await page.locator('#watch-question').isVisible(), true);
    assert.equal(await page.locator('#watch-threshold').isVisible(), false);
    await page.screenshot({ path: path.join(shots, 'answer.png'), fullPage: true });
    assert.ok(fs.statSync(path.join(shots, 'answer.png')).size > 1000);
    // Kept for a look: VIGIL_TIMELINE_SCREENSHOT=/some/dir copies both screenshots there.
    if (process.env.VIGIL_TIMELINE_SCREENSHOT) for (const f of ['timeline.png', 'answer.png']) fs.copyFileSync(path.join(shots, f), path.join(process.env.VIGIL_TIMELINE_SCREENSHOT, f));
    assert.deepEqual(problems, []);
  });
});

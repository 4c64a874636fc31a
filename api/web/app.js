// Vigil's web page: plain browser JavaScript modules, no build step. Every request carries the
// bearer token (kept in this browser's localStorage); pictures are fetched with it and shown as
// blob: URLs, and streamed answers and alerts are read from fetch() (EventSource cannot send an
// Authorization header). Text from the server is only ever set with textContent, never parsed as
// HTML. The timeline, watches, alerts and cluster panels live in timeline.js, watches.js, alerts.js
// and cluster.js.

import { $, api, apiError, auth, clock, fillStreamSelect, gapText, headers, imageUrl, readEvents, span, withClass } from './common.js';
import { createTimeline } from './timeline.js';
import { createWatches } from './watches.js';
import { createAlerts } from './alerts.js';
import { createCluster } from './cluster.js';

const POLL_MS = 1500;

let pollTimer = null;
/** Stream id -> { element, thumbChunk, thumbUrl } */
const cards = new Map();
/** What clicking a scene asks when the question box is empty. */
const SCENE_QUESTION = 'What is happening in this scene?';

const watches = createWatches();
const timeline = createTimeline({ onAsk: askAboutRange, onChoose: (id) => watches.show(id) });
const cluster = createCluster();
const alerts = createAlerts({
  onAlert: (alert) => {
    timeline.addAlert(alert);
    watches.alerted(alert);
  },
});

// ---------------------------------------------------------------------------------------------
// Streams list

async function refresh() {
  try {
    const { streams } = await api('/v1/streams');
    $('#connection').textContent = 'connected';
    render(streams);
  } catch (error) {
    $('#connection').textContent = error.status === 401 ? 'this server needs a token' : `cannot reach the server: ${error.message}`;
  }
}

function schedule() {
  clearTimeout(pollTimer);
  pollTimer = setTimeout(async () => {
    await refresh();
    schedule();
  }, POLL_MS);
}

function render(streams) {
  $('#no-streams').hidden = streams.length > 0;
  const seen = new Set();
  for (const s of streams) {
    seen.add(s.id);
    let card = cards.get(s.id);
    if (!card) {
      card = createCard(s.id);
      cards.set(s.id, card);
      $('#streams').append(card.element);
    }
    updateCard(card, s);
  }
  for (const [id, card] of cards) {
    if (seen.has(id)) continue;
    card.element.remove();
    if (card.thumbUrl) URL.revokeObjectURL(card.thumbUrl);
    cards.delete(id);
  }
  updateStreamSelect(streams);
  timeline.setStreams(streams);
}

function createCard(id) {
  const element = withClass('li', 'stream');
  element.dataset.streamId = id;
  const img = document.createElement('img');
  img.alt = `latest frame of ${id}`;
  img.className = 'placeholder';
  const info = withClass('div', 'info');
  const title = withClass('div', 'title');
  const source = withClass('div', 'source');
  const state = withClass('span', 'state');
  const figures = withClass('div', 'figures');
  const gaps = withClass('div', 'gaps');
  const horizon = withClass('div', 'horizon');
  const bar = withClass('div', 'horizon-bar');
  const horizonText = withClass('div', 'horizon-text');
  horizon.append(bar, horizonText);
  const actions = document.createElement('div');
  const stop = button('Stop', () => api(`/v1/streams/${encodeURIComponent(id)}/stop`, { method: 'POST' }).then(refresh));
  const start = button('Start', () => api(`/v1/streams/${encodeURIComponent(id)}/start`, { method: 'POST' }).then(refresh));
  const remove = button('Delete', () => {
    if (!confirm(`Delete stream ${id} and its memory?`)) return;
    api(`/v1/streams/${encodeURIComponent(id)}?purge=true`, { method: 'DELETE' }).then(refresh);
  });
  actions.append(stop, start, remove);
  info.append(title, source, state, figures, gaps, horizon, actions);
  element.append(img, info);
  return { element, img, title, source, state, figures, gaps, horizon, bar, horizonText, stop, start, thumbChunk: null, thumbUrl: null };
}

function button(text, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = text;
  b.addEventListener('click', () => {
    Promise.resolve(onClick()).catch((error) => alert(error.message));
  });
  return b;
}

function updateCard(card, s) {
  card.title.textContent = s.name === s.id ? s.id : `${s.name} (${s.id})`;
  card.source.textContent = s.source;
  card.source.title = s.source;
  card.state.textContent = s.state;
  card.state.className = `state ${s.state}`;
  const parts = [`${s.memory?.chunks ?? 0} chunks`, `${((s.memory?.bytes ?? 0) / 1024 ** 2).toFixed(1)} MiB`];
  if (s.ingest) parts.push(`${s.ingest.fps.toFixed(1)} fps`, `lag ${(s.ingest.lagMs / 1000).toFixed(1)} s`, `${s.ingest.drops} dropped`, `${s.ingest.gated} gated`);
  // Outages persisted in the timeline (they survive restarts), not only this ingest's.
  if (s.memory) parts.push(`${s.memory.gaps} ${s.memory.gaps === 1 ? 'gap' : 'gaps'}`);
  if (s.progress?.fraction != null) parts.push(`${Math.round(s.progress.fraction * 100)}%`);
  if (s.error) parts.push(`${s.error.code}: ${s.error.message}`);
  card.figures.textContent = parts.join(' · ');
  const last = s.memory?.lastGap;
  card.gaps.textContent = last ? `last gap: ${gapText(last)}` : '';
  card.gaps.hidden = !last;
  updateHorizon(card, s.memory?.horizon ?? null);
  const running = ['starting', 'connecting', 'live', 'backing-off', 'processing', 'paused'].includes(s.state);
  card.stop.hidden = !running;
  card.start.hidden = running || s.state === 'ended' || s.state === 'unavailable';
  if (s.latestThumbnail !== null && s.latestThumbnail !== card.thumbChunk) {
    card.thumbChunk = s.latestThumbnail;
    imageUrl(`/v1/streams/${encodeURIComponent(s.id)}/frames/${s.latestThumbnail}.jpg`).then((url) => {
      if (!url) return;
      if (card.thumbUrl) URL.revokeObjectURL(card.thumbUrl);
      card.thumbUrl = url;
      card.img.src = url;
      card.img.className = '';
    });
  }
}

/**
 * The memory horizon as a bar over stream time 0..newest: what retention forgot (hatched), the
 * kept span per fidelity tier, and the outages inside it; a line of text says the same.
 */
function updateHorizon(card, h) {
  card.horizon.hidden = !h || h.from === null;
  if (card.horizon.hidden) return;
  // Rebuilt only when it changed: the poll runs every 1.5 s, and an unchanged bar keeps its elements.
  const key = JSON.stringify(h);
  if (card.horizonKey === key) return;
  card.horizonKey = key;
  const whole = Math.max(h.to, 1e-9);
  const pct = (t) => `${((100 * Math.min(Math.max(t, 0), whole)) / whole).toFixed(3)}%`;
  const piece = (className, from, to, title) => {
    const el = document.createElement('div');
    el.className = className;
    el.style.left = pct(from);
    el.style.width = `calc(${pct(to)} - ${pct(from)})`;
    el.title = title;
    return el;
  };
  const pieces = [];
  if (h.forgottenBefore !== null) pieces.push(piece('forgotten', 0, h.from, `forgotten: ${clock(0)}–${clock(h.from)} (${h.forgottenChunks} chunks)`));
  for (const s of h.spans) pieces.push(piece(`span ${s.tier}`, s.from, s.to, `${s.tier}: ${clock(s.from)}–${clock(s.to)} (${s.chunks} chunks)`));
  for (const g of h.gaps) pieces.push(piece('gap', g.from, g.to, gapText(g)));
  card.bar.replaceChildren(...pieces);
  const parts = [`memory ${clock(h.from)}–${clock(h.to)}`, h.spans.map((s) => s.tier).join(', ')];
  if (h.gaps.length > 0) parts.push(`${h.gaps.length}${h.gapsTruncated ? '+' : ''} ${h.gaps.length === 1 ? 'gap' : 'gaps'}`);
  if (h.forgottenBefore !== null) parts.push(`forgotten before ${clock(h.forgottenBefore)} (${h.forgottenChunks} chunks)`);
  card.horizonText.textContent = parts.join(' · ');
}

function updateStreamSelect(streams) {
  fillStreamSelect($('#ask-stream'), streams);
}

// ---------------------------------------------------------------------------------------------
// Adding a stream

async function addStream(event) {
  event.preventDefault();
  $('#add-error').textContent = '';
  const file = $('#upload').files[0];
  const name = $('#name').value.trim();
  const fps = Number($('#fps').value);
  const window_ = Number($('#window').value);
  try {
    if (file) {
      const form = new FormData();
      form.append('file', file);
      if (name) form.append('name', name);
      form.append('fps', String(fps));
      form.append('window', String(window_));
      await api('/v1/streams', { method: 'POST', body: form });
    } else {
      const source = $('#source').value.trim();
      if (!source) throw new Error('give a source URL or path, or choose a file to upload');
      const body = { source, fps, window: window_, ...(name ? { name } : {}) };
      await api('/v1/streams', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    }
    $('#add-form').reset();
    await refresh();
  } catch (error) {
    $('#add-error').textContent = error.message;
  }
}

// ---------------------------------------------------------------------------------------------
// Asking

/** A scene of the timeline was clicked: ask the question box's question (or a default) about its time range. */
function askAboutRange(streamId, range) {
  $('#ask-stream').value = streamId;
  $('#from').value = String(range.from);
  $('#to').value = String(range.to);
  if ($('#question').value.trim() === '') $('#question').value = SCENE_QUESTION;
  $('#ask-form').scrollIntoView({ block: 'nearest' });
  return ask();
}

async function ask(event) {
  event?.preventDefault();
  const id = $('#ask-stream').value;
  const question = $('#question').value.trim();
  if (!id || !question) return;
  $('#answer-box').hidden = false;
  $('#answer').textContent = '';
  $('#answer-timing').textContent = 'waiting for the model…';
  $('#ask-error').textContent = '';
  $('#evidence').replaceChildren();
  $('#ask-button').disabled = true;
  try {
    const body = { question, mode: $('#mode').value, r: Number($('#r').value), stream: true };
    // An optional time range (stream seconds): only memory of that stretch is searched.
    if ($('#from').value !== '') body.from = Number($('#from').value);
    if ($('#to').value !== '') body.to = Number($('#to').value);
    const response = await fetch(`/v1/streams/${encodeURIComponent(id)}/questions`, {
      method: 'POST',
      headers: headers({ 'Content-Type': 'application/json', Accept: 'text/event-stream' }),
      body: JSON.stringify(body),
    });
    if (!response.ok) throw await apiError(response);
    let text = '';
    for await (const { event: name, data } of readEvents(response.body)) {
      if (name === 'token') {
        text += data.text;
        $('#answer').textContent = text.trim();
      } else if (name === 'evidence') {
        showAnswer(data);
      } else if (name === 'error') {
        throw new Error(data.error.message);
      }
    }
  } catch (error) {
    $('#ask-error').textContent = error.message;
    $('#answer-timing').textContent = '';
  } finally {
    $('#ask-button').disabled = false;
  }
}

function showAnswer(answer) {
  $('#answer').textContent = answer.text;
  const t = answer.timing;
  // Evidence holds retrieved chunks and the outages ({gap}) in the searched time range.
  const chunks = answer.evidence.filter((e) => !e.gap);
  const gaps = answer.evidence.filter((e) => e.gap).map((e) => e.gap);
  const skipped = answer.skipped ?? [];
  if (answer.outOfMemory) {
    // Nothing of the asked time is in memory: the text says so; no model ran.
    $('#answer-timing').textContent = 'not in memory: no model call';
    $('#evidence').replaceChildren();
    return;
  }
  const summary = [`${answer.mode}`, `first token ${Math.round(t.ttftMs)} ms`, `total ${Math.round(t.totalMs)} ms`, `${chunks.length} ${chunks.length === 1 ? 'chunk' : 'chunks'} retrieved`];
  if (gaps.length > 0) summary.push(`${gaps.length} ${gaps.length === 1 ? 'gap' : 'gaps'} in the timeline`);
  if (answer.coverage?.note) summary.push(answer.coverage.note);
  if (skipped.length > 0) summary.push(`${skipped.length} damaged ${skipped.length === 1 ? 'chunk' : 'chunks'} left out (${skipped.map((k) => (k.t === null ? '?' : clock(k.t))).join(', ')})`);
  $('#answer-timing').textContent = summary.join(' · ');
  // Strongest evidence first; the rest of the retrieved set follows in time order.
  const sorted = [...chunks].sort((a, b) => b.score - a.score || a.tStart - b.tStart).slice(0, 12);
  const best = sorted[0]?.score ?? 0;
  const figures = sorted.map((e) => {
    const figure = document.createElement('figure');
    figure.dataset.chunkId = String(e.chunkId);
    if (best > 0 && e.score >= best * 0.5) figure.classList.add('strong');
    const img = document.createElement('img');
    img.alt = `frame at ${span(e.tStart, e.tEnd)}`;
    const caption = document.createElement('figcaption');
    caption.textContent = `${span(e.tStart, e.tEnd)} · score ${e.score.toFixed(2)}`;
    figure.append(img, caption);
    if (e.thumbnail) {
      imageUrl(e.thumbnail).then((url) => {
        if (url) img.src = url;
      });
    }
    return figure;
  });
  // Outages follow, in time order: what the memory cannot show, and why.
  const outages = gaps.map((gap) => {
    const figure = document.createElement('figure');
    figure.className = 'gap';
    const caption = document.createElement('figcaption');
    caption.textContent = gapText(gap);
    figure.append(caption);
    return figure;
  });
  $('#evidence').replaceChildren(...figures, ...outages);
}

// ---------------------------------------------------------------------------------------------

$('#token').value = auth.token;
$('#token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  auth.set($('#token').value.trim());
  refresh();
  alerts.connect();
  cluster.refresh();
});
$('#add-form').addEventListener('submit', addStream);
$('#ask-form').addEventListener('submit', ask);
refresh().then(schedule);
alerts.connect();
cluster.start();

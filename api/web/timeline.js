// The timeline panel: one stream's GET /v1/streams/{id}/timeline drawn over its stream time: memory
// tiers (a thin band), scenes (a chunk's span; gated frames extend it), outages and alert markers
// on one track, a time axis, and a filmstrip of the scenes' thumbnails (natural aspect ratio,
// fetched as blob: URLs when they scroll into view). Clicking a scene asks about its time range.
import { $, api, clock, fillStreamSelect, gapText, imageUrl, span, withClass } from './common.js';

/** Reloads of one stream's timeline are at least this far apart while it grows. */
const MIN_RELOAD_MS = 3000;

/**
 * @param {{ onAsk: (streamId: string, range: { from: number, to: number }) => void, onChoose: (streamId: string | null) => void }} options
 */
export function createTimeline({ onAsk, onChoose }) {
  const select = $('#tl-stream');
  const root = $('#timeline');
  const tiers = root.querySelector('.tl-tiers');
  const track = root.querySelector('.tl-track');
  const axis = root.querySelector('.tl-axis');
  const filmstrip = root.querySelector('.filmstrip');
  /** Thumbnail URL -> blob: URL, for the stream shown (revoked when another is chosen). */
  let pictures = new Map();
  let shown = null;
  /** What the last load saw of the stream's status: a change means the timeline grew. */
  let seenKey = null;
  let loading = null;
  let lastLoad = 0;
  let pendingTimer = null;

  const observer = new IntersectionObserver(
    (entries) => {
      for (const entry of entries) {
        if (!entry.isIntersecting) continue;
        observer.unobserve(entry.target);
        loadPicture(entry.target);
      }
    },
    { root: filmstrip, rootMargin: '0px 200px' },
  );

  async function loadPicture(img) {
    const path = img.dataset.src;
    let url = pictures.get(path);
    if (!url) {
      url = await imageUrl(path);
      if (!url) return;
      pictures.set(path, url);
    }
    img.src = url;
  }

  function choose(id) {
    if (id === shown) return;
    for (const url of pictures.values()) URL.revokeObjectURL(url);
    pictures = new Map();
    shown = id;
    seenKey = null;
    onChoose(id);
    reload();
  }

  select.addEventListener('change', () => choose(select.value));

  /** Keeps the stream list in step with the page's poll; reloads the shown timeline when its stream changed. */
  function setStreams(streams) {
    const ids = streams.map((s) => s.id);
    if (fillStreamSelect(select, streams) && ids.includes(shown)) select.value = shown;
    if (!ids.includes(shown)) {
      if (ids.length === 0) {
        shown = null;
        onChoose(null);
        root.hidden = true;
        $('#tl-summary').textContent = '';
        return;
      }
      choose(select.value || ids[0]);
      return;
    }
    const s = streams.find((x) => x.id === shown);
    const key = s.memory ? `${s.memory.chunks}|${s.memory.lastT}|${s.memory.gaps}` : 'none';
    if (key !== seenKey) {
      seenKey = key;
      reload();
    }
  }

  /** Loads the shown stream's timeline now, or soon when a load just ran (or is running). */
  function reload() {
    if (shown === null) return;
    const wait = Math.max(0, lastLoad + MIN_RELOAD_MS - Date.now());
    if (loading || wait > 0) {
      pendingTimer ??= setTimeout(() => {
        pendingTimer = null;
        reload();
      }, Math.max(wait, 200));
      return;
    }
    const id = shown;
    lastLoad = Date.now();
    loading = api(`/v1/streams/${encodeURIComponent(id)}/timeline`)
      .then((timeline) => {
        if (id === shown) render(timeline);
      })
      .catch((error) => {
        if (id === shown) $('#tl-summary').textContent = `timeline: ${error.message}`;
      })
      .finally(() => {
        loading = null;
      });
  }

  function render(tl) {
    const empty = tl.spans.length === 0 && tl.tiers.length === 0;
    $('#tl-empty').hidden = !empty;
    root.hidden = empty;
    root.dataset.streamId = tl.stream;
    const parts = [`${clock(tl.from)}–${clock(tl.to)}`, `${tl.spans.length} ${tl.spans.length === 1 ? 'scene' : 'scenes'}`];
    if (tl.truncated) parts.push(`${tl.step} chunks a scene (${tl.chunks} chunks)`);
    parts.push(`${tl.gaps.length}${tl.gapsTruncated ? '+' : ''} ${tl.gaps.length === 1 ? 'gap' : 'gaps'}`);
    parts.push(`${tl.alerts.length}${tl.alertsTruncated ? '+' : ''} ${tl.alerts.length === 1 ? 'alert' : 'alerts'}`);
    if (tl.tiers.length > 0) parts.push(tl.tiers.map((t) => t.tier).join(', '));
    $('#tl-summary').textContent = parts.join(' · ');
    if (empty) return;

    const whole = Math.max(tl.to - tl.from, 1e-9);
    const pct = (t) => `${((100 * Math.min(Math.max(t - tl.from, 0), whole)) / whole).toFixed(3)}%`;
    const place = (el, from, to) => {
      el.style.left = pct(from);
      el.style.width = `calc(${pct(to)} - ${pct(from)})`;
      return el;
    };

    tiers.replaceChildren(...tl.tiers.map((t) => Object.assign(place(withClass('div', `tier ${t.tier}`), t.from, t.to), { title: `${t.tier}: ${clock(t.from)}–${clock(t.to)}` })));

    // A scene lasts until the next one starts (a chunk is a frame at its time; gating extends it).
    const scenes = tl.spans.map((s, i) => {
      const until = i + 1 < tl.spans.length ? Math.max(s.to, tl.spans[i + 1].from) : Math.max(s.to, tl.to);
      const el = place(withClass('button', `tl-span${i % 2 ? ' odd' : ''}`), s.from, until);
      el.type = 'button';
      el.dataset.from = String(s.from);
      el.dataset.to = String(s.to);
      el.title = `${span(s.from, s.to)} · ${s.chunks} ${s.chunks === 1 ? 'chunk' : 'chunks'} · click to ask about it`;
      el.addEventListener('click', () => ask(tl.stream, s));
      return el;
    });
    const gaps = tl.gaps.map((g) => Object.assign(place(withClass('div', 'tl-gap'), g.from, g.to), { title: gapText(g) }));
    const alerts = tl.alerts.map((a) => alertMarker(a, pct));
    track.replaceChildren(...scenes, ...gaps, ...alerts);

    const ticks = 5;
    axis.replaceChildren(
      ...Array.from({ length: ticks + 1 }, (_, i) => {
        const t = tl.from + (whole * i) / ticks;
        const label = withClass('span', 'tick');
        label.style.left = pct(t);
        label.textContent = clock(t);
        return label;
      }),
    );

    // Pictures of scenes no longer listed (a live stream's spans merge as it grows) are let go.
    const listed = new Set(tl.spans.map((s) => s.thumbnail));
    for (const [path, url] of pictures) {
      if (listed.has(path)) continue;
      URL.revokeObjectURL(url);
      pictures.delete(path);
    }
    filmstrip.replaceChildren(
      ...tl.spans.map((s) => {
        const tile = withClass('button', 'tl-thumb');
        tile.type = 'button';
        tile.dataset.from = String(s.from);
        tile.dataset.to = String(s.to);
        tile.title = `${span(s.from, s.to)}: click to ask about it`;
        const img = document.createElement('img');
        img.alt = `scene at ${span(s.from, s.to)}`;
        const caption = withClass('span', 'caption');
        caption.textContent = span(s.from, s.to);
        tile.append(img, caption);
        if (s.thumbnail) {
          img.dataset.src = s.thumbnail;
          const cached = pictures.get(s.thumbnail);
          if (cached) img.src = cached;
          else observer.observe(img);
        } else {
          img.classList.add('none');
        }
        tile.addEventListener('click', () => ask(tl.stream, s));
        return tile;
      }),
    );
  }

  /** A scene was clicked: it (on the track and in the filmstrip) is marked as the one asked about. */
  function ask(stream, s) {
    for (const el of root.querySelectorAll('.asked')) el.classList.remove('asked');
    for (const el of root.querySelectorAll(`[data-from="${s.from}"]`)) el.classList.add('asked');
    return onAsk(stream, { from: s.from, to: s.to });
  }

  function alertMarker(a, pct) {
    const marker = withClass('div', 'tl-alert');
    marker.style.left = pct(a.t);
    marker.dataset.alertId = a.id;
    marker.title = `${clock(a.t)} · ${a.question ?? a.watchId}: ${a.answer}`;
    return marker;
  }

  /** A live alert: its stream's timeline (when shown) gets it at the next load, soon. */
  function addAlert(alert) {
    if (alert.stream !== shown) return;
    seenKey = null;
    reload();
  }

  return { setStreams, addAlert, get shown() {
    return shown;
  } };
}

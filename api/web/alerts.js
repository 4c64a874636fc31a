// Alerts as they happen: the page subscribes to GET /v1/alerts/events (Server-Sent Events, read
// from fetch() since EventSource cannot send the token), then lists the newest stored ones; each
// new alert is added at the top without a reload, with its first evidence frame's thumbnail (at its
// own aspect ratio). A dropped connection is retried.
import { $, api, clock, headers, imageUrl, readEvents, withClass } from './common.js';

/** Alerts kept on the page. */
const MAX_SHOWN = 50;
const RETRY_MS = 3000;

/**
 * @param {{ onAlert: (alert: object) => void }} options
 */
export function createAlerts({ onAlert }) {
  let controller = null;
  let retryTimer = null;
  const shown = new Set();
  /** Alert id -> the blob: URL of its thumbnail, let go when its row leaves the list. */
  const pictures = new Map();

  function show(alert, live) {
    if (shown.has(alert.id)) return;
    shown.add(alert.id);
    const li = withClass('li', `alert${live ? ' live' : ''}`);
    li.dataset.alertId = alert.id;
    li.dataset.stream = alert.stream;
    const when = withClass('span', 'when');
    when.textContent = `${alert.stream} · ${clock(alert.t)}`;
    when.title = new Date(alert.wallTime).toLocaleString();
    const answer = withClass('span', 'answer');
    answer.textContent = alert.answer;
    li.title = `watch ${alert.watchId}`;
    const frame = alert.evidence?.find((e) => e.thumbnail);
    if (frame) li.append(thumbnail(alert.id, frame));
    li.append(when, answer);
    const list = $('#alerts');
    if (live) list.prepend(li);
    else list.append(li);
    while (list.children.length > MAX_SHOWN) {
      const id = list.lastElementChild.dataset.alertId;
      list.lastElementChild.remove();
      if (pictures.has(id)) URL.revokeObjectURL(pictures.get(id));
      pictures.delete(id);
    }
  }

  /** The evidence frame's picture, fetched with the token; a fixed height, its width from the picture. */
  function thumbnail(alertId, frame) {
    const img = withClass('img', 'alert-thumb pending');
    img.alt = `frame at ${clock(frame.t)}`;
    imageUrl(frame.thumbnail)
      .then((url) => {
        if (!url) return;
        // The row may have left the list while the picture loaded.
        if (!img.isConnected) {
          URL.revokeObjectURL(url);
          return;
        }
        pictures.set(alertId, url);
        img.src = url;
        img.classList.remove('pending');
      })
      .catch(() => undefined);
    return img;
  }

  function state(text) {
    $('#alerts-state').textContent = text;
  }

  /** (Re)subscribes: after the token is set, or a dropped connection. */
  async function connect() {
    controller?.abort();
    clearTimeout(retryTimer);
    const own = new AbortController();
    controller = own;
    state('connecting…');
    try {
      const response = await fetch('/v1/alerts/events', { headers: headers({ Accept: 'text/event-stream' }), signal: own.signal });
      if (response.status === 401) {
        state('alerts need the token');
        return;
      }
      if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
      for await (const { event, data } of readEvents(response.body)) {
        if (event === 'ready') {
          state('live');
          // Subscribed first, listed second: an alert raised in between is in one or the other.
          api('/v1/alerts?limit=20')
            .then(({ alerts }) => {
              for (const a of [...alerts].reverse()) show(a, false);
            })
            .catch(() => undefined);
        } else if (event === 'alert') {
          show(data, true);
          onAlert(data);
        }
      }
      throw new Error('the server closed the alert stream');
    } catch (error) {
      if (own.signal.aborted) return;
      state(`alerts disconnected (${error.message}); retrying`);
      retryTimer = setTimeout(connect, RETRY_MS);
    }
  }

  return { connect };
}

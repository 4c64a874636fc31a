// What every part of the page shares: the bearer token, requests that carry it, pictures fetched
// with it (as blob: URLs), stream-time formatting and the Server-Sent Events reader.
// Text from the server is only ever set with textContent, never parsed as HTML.

const TOKEN_KEY = 'vigil.token';

/** The token in use (kept in this browser's localStorage). */
export const auth = {
  token: localStorage.getItem(TOKEN_KEY) ?? '',
  set(value) {
    this.token = value;
    localStorage.setItem(TOKEN_KEY, value);
  },
};

export function headers(extra = {}) {
  return auth.token ? { ...extra, Authorization: `Bearer ${auth.token}` } : extra;
}

export async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers(options.headers) });
  if (!response.ok) throw await apiError(response);
  return response.status === 204 ? null : response.json();
}

export async function apiError(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body?.error?.message) message = body.error.message;
  } catch {
    // not JSON: keep the status line
  }
  const error = new Error(message);
  error.status = response.status;
  return error;
}

export async function imageUrl(path) {
  const response = await fetch(path, { headers: headers() });
  if (!response.ok) return null;
  return URL.createObjectURL(await response.blob());
}

export const $ = (selector) => document.querySelector(selector);

/** A new element with a class name. */
export function withClass(tag, className) {
  const node = document.createElement(tag);
  node.className = className;
  return node;
}

export const clock = (t) => {
  const s = Math.floor(t);
  const h = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
};

/** A chunk's time, or its span when frame gating extended it over frames it did not encode ("0:10–0:42"). */
export const span = (tStart, tEnd) => (clock(tEnd) === clock(tStart) ? clock(tStart) : `${clock(tStart)}–${clock(tEnd)}`);

/** An outage in the timeline: no frames between from and to (stream time). */
export const gapText = (gap) => `not recorded ${clock(gap.from)}–${clock(gap.to)}: ${gap.reason}`;

/** Server-Sent Events from a fetch body: yields {event, data} with data parsed as JSON (comment lines skipped). */
export async function* readEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
      }
      if (data.length > 0) yield { event, data: JSON.parse(data.join('\n')) };
    }
  }
}

/**
 * Refills a stream <select> when the list of streams changed (keeps the chosen one where it still
 * exists); true when it was refilled.
 */
export function fillStreamSelect(select, streams) {
  const ids = streams.map((s) => s.id);
  if (ids.join('\n') === [...select.options].map((o) => o.value).join('\n')) return false;
  const current = select.value;
  select.replaceChildren(
    ...streams.map((s) => {
      const option = document.createElement('option');
      option.value = s.id;
      option.textContent = s.name === s.id ? s.id : `${s.name} (${s.id})`;
      return option;
    }),
  );
  if (ids.includes(current)) select.value = current;
  return true;
}

// Watch management for the stream the timeline shows: its watches with their stats, a form that
// adds a question watch (question, trigger, pattern for answer-matches) or a health watch
// (condition, threshold), both with a cooldown, and a delete button on each.
import { $, api, withClass } from './common.js';

/** Fields every watch has, left out of the line that describes a watch of another kind. */
const COMMON = new Set(['id', 'stream', 'createdAt', 'active', 'notify', 'cooldownSec', 'maxIntervalSec', 'kind', 'stats']);

/** A health watch's condition in words (the threshold follows). */
const CONDITIONS = { offline: 'offline', frozen: 'frozen image', lag: 'falling behind' };

export function createWatches() {
  let stream = null;
  const kind = $('#watch-kind');
  const trigger = $('#watch-trigger');
  const patternLabel = $('#watch-pattern-label');
  /** Shows the fields of the chosen kind (and the pattern only for answer-matches); only shown fields are required. */
  const showFields = () => {
    const health = kind.value === 'health';
    for (const label of document.querySelectorAll('#watch-form .question-field')) label.hidden = health;
    for (const label of document.querySelectorAll('#watch-form .health-field')) label.hidden = !health;
    patternLabel.hidden = health || trigger.value !== 'answer-matches';
    $('#watch-question').required = !health;
    $('#watch-pattern').required = !patternLabel.hidden;
    $('#watch-threshold').required = health;
  };
  kind.addEventListener('change', showFields);
  trigger.addEventListener('change', showFields);
  showFields();

  const path = (id) => `/v1/streams/${encodeURIComponent(id)}/watches`;

  async function refresh() {
    const id = stream;
    if (id === null) {
      $('#watches').replaceChildren();
      return;
    }
    try {
      const { watches } = await api(path(id));
      if (id === stream) $('#watches').replaceChildren(...watches.map((w) => item(id, w)));
    } catch (error) {
      if (id === stream) $('#watch-error').textContent = error.message;
    }
  }

  function item(id, w) {
    const li = withClass('li', `watch${w.active === false ? ' inactive' : ''}${w.stats?.raised ? ' raised' : ''}`);
    li.dataset.watchId = w.id;
    if (w.kind === 'health') li.dataset.condition = w.condition;
    const text = withClass('span', 'watch-text');
    text.textContent = describe(w);
    const stats = withClass('span', 'watch-stats');
    stats.textContent = statsText(w);
    const remove = withClass('button', 'delete');
    remove.type = 'button';
    remove.textContent = 'Delete';
    remove.addEventListener('click', async () => {
      try {
        await api(`${path(id)}/${encodeURIComponent(w.id)}`, { method: 'DELETE' });
      } catch (error) {
        $('#watch-error').textContent = error.message;
      }
      await refresh();
    });
    li.append(text, stats, remove);
    return li;
  }

  /** The request body for the form's kind. */
  function body() {
    const spec =
      kind.value === 'health'
        ? { kind: 'health', condition: $('#watch-condition').value, thresholdSec: Number($('#watch-threshold').value) }
        : { question: $('#watch-question').value.trim(), trigger: trigger.value, ...(trigger.value === 'answer-matches' ? { pattern: $('#watch-pattern').value } : {}) };
    if ($('#watch-cooldown').value !== '') spec.cooldownSec = Number($('#watch-cooldown').value);
    return spec;
  }

  async function add(event) {
    event.preventDefault();
    $('#watch-error').textContent = '';
    if (stream === null) {
      $('#watch-error').textContent = 'add a stream first';
      return;
    }
    try {
      await api(path(stream), { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body()) });
      $('#watch-question').value = '';
      await refresh();
    } catch (error) {
      $('#watch-error').textContent = error.message;
    }
  }
  $('#watch-form').addEventListener('submit', add);

  return {
    /** Shows this stream's watches (null: none). */
    show(id) {
      if (id === stream) return;
      stream = id;
      $('#watch-error').textContent = '';
      $('#watches').replaceChildren();
      refresh();
    },
    /** A new alert: its watch's stats moved (when the stream is the one shown). */
    alerted(alert) {
      if (alert.stream === stream) refresh();
    },
    refresh,
  };
}

/** One line for a watch: a question watch's question and trigger, a health watch's condition; any other kind by its own fields. */
function describe(w) {
  const flags = [];
  if (w.cooldownSec !== undefined) flags.push(`cooldown ${w.cooldownSec} s`);
  if (w.active === false) flags.push('inactive');
  const tail = flags.length ? ` · ${flags.join(' · ')}` : '';
  if (typeof w.question === 'string') {
    const trigger = w.trigger === 'answer-matches' ? `answer matches /${w.pattern}/` : w.trigger;
    return `“${w.question}” · ${trigger}${tail}`;
  }
  if (w.kind === 'health') return `health: ${CONDITIONS[w.condition] ?? w.condition} > ${w.thresholdSec} s${tail}`;
  const fields = Object.entries(w)
    .filter(([k]) => !COMMON.has(k))
    .map(([k, v]) => `${k} ${typeof v === 'object' ? JSON.stringify(v) : v}`);
  return `${w.kind ?? 'watch'}: ${fields.join(' · ')}${tail}`;
}

const plural = (n, one) => `${n} ${one}${n === 1 ? '' : 's'}`;

/** What the watch's stats say: a question watch's counts; a health watch's state (raised since when, or not judged now). */
function statsText(w) {
  const s = w.stats;
  if (!s) return '';
  if (w.kind === 'health') {
    if (s.raised) return `raised since ${new Date(s.since).toLocaleTimeString()}: ${s.answer}`;
    return s.judged ? 'ok' : 'not judged now (stopped, a file, or not live yet)';
  }
  const parts = [plural(s.framesScored, 'frame'), plural(s.checks, 'check'), plural(s.alerts, 'alert')];
  if (s.errors > 0) parts.push(`${plural(s.errors, 'error')} (${s.lastError})`);
  return parts.join(' · ');
}

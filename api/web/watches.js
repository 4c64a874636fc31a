// Watch management for the stream the timeline shows: its watches (any kind the API returns), a
// form that adds a question watch (question, trigger, pattern for answer-matches, cooldown), and a
// delete button on each.
import { $, api, withClass } from './common.js';

/** Fields every watch has, left out of the line that describes a watch of another kind. */
const COMMON = new Set(['id', 'stream', 'createdAt', 'active', 'notify', 'cooldownSec', 'maxIntervalSec', 'kind']);

export function createWatches() {
  let stream = null;
  const trigger = $('#watch-trigger');
  const patternLabel = $('#watch-pattern-label');
  const showPattern = () => {
    patternLabel.hidden = trigger.value !== 'answer-matches';
    $('#watch-pattern').required = !patternLabel.hidden;
  };
  trigger.addEventListener('change', showPattern);
  showPattern();

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
    const li = withClass('li', `watch${w.active === false ? ' inactive' : ''}`);
    li.dataset.watchId = w.id;
    const text = withClass('span', 'watch-text');
    text.textContent = describe(w);
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
    li.append(text, remove);
    return li;
  }

  async function add(event) {
    event.preventDefault();
    $('#watch-error').textContent = '';
    if (stream === null) {
      $('#watch-error').textContent = 'add a stream first';
      return;
    }
    const body = { question: $('#watch-question').value.trim(), trigger: trigger.value };
    if (trigger.value === 'answer-matches') body.pattern = $('#watch-pattern').value;
    if ($('#watch-cooldown').value !== '') body.cooldownSec = Number($('#watch-cooldown').value);
    try {
      await api(path(stream), { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
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
    refresh,
  };
}

/** One line for a watch: a question watch's question and trigger; any other kind by its own fields. */
function describe(w) {
  const flags = [];
  if (w.cooldownSec !== undefined) flags.push(`cooldown ${w.cooldownSec} s`);
  if (w.active === false) flags.push('inactive');
  if (typeof w.question === 'string') {
    const trigger = w.trigger === 'answer-matches' ? `answer matches /${w.pattern}/` : w.trigger;
    return `“${w.question}” · ${trigger}${flags.length ? ` · ${flags.join(' · ')}` : ''}`;
  }
  const fields = Object.entries(w)
    .filter(([k]) => !COMMON.has(k))
    .map(([k, v]) => `${k} ${typeof v === 'object' ? JSON.stringify(v) : v}`);
  return `${w.kind ?? 'watch'}: ${fields.join(' · ')}${flags.length ? ` · ${flags.join(' · ')}` : ''}`;
}

// The Cluster panel, shown only when the server is a cluster node (GET /v1/cluster answers 200): the
// nodes with their streams, capacity and draining flag, and each stream's owner, lease epoch and
// replication lag. A server outside a cluster answers 404 once and the panel stays hidden.
import { $, api, clock } from './common.js';

const POLL_MS = 3000;

export function createCluster() {
  let timer = null;
  let standalone = false;

  async function refresh() {
    if (standalone) return;
    try {
      render(await api('/v1/cluster'));
    } catch (error) {
      // 404: not a cluster node (never will be while it runs); 401: no token yet (retried when one is entered).
      if (error.status === 404) standalone = true;
      if (error.status === 404 || error.status === 401) {
        $('#cluster-section').hidden = true;
        return;
      }
      $('#cluster-summary').textContent = `cluster status unavailable: ${error.message}`;
    }
  }

  function start() {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      await refresh();
      if (!standalone) start();
    }, POLL_MS);
  }

  return {
    refresh,
    start: () => refresh().then(start),
  };
}

function render(status) {
  $('#cluster-section').hidden = false;
  const unowned = status.streams.filter((s) => s.owner === null).length;
  const parts = [`${status.nodes.length} ${status.nodes.length === 1 ? 'node' : 'nodes'}`, `${status.streams.length} ${status.streams.length === 1 ? 'stream' : 'streams'}`, `answered by ${status.node}`];
  if (unowned > 0) parts.push(`${unowned} without an owner (moving, or no room)`);
  $('#cluster-summary').textContent = parts.join(' · ');
  $('#cluster-nodes tbody').replaceChildren(
    ...status.nodes.map((n) => row(n.nodeId, [n.nodeId, n.streams.join(', ') || '–', `${n.streams.length}/${n.capacity}`, n.draining ? 'draining' : '', n.apiUrl], n.draining ? 'draining' : '')),
  );
  $('#cluster-streams tbody').replaceChildren(
    ...status.streams.map((s) =>
      row(s.id, [
        s.id,
        s.owner ?? 'none (moving)',
        s.epoch === null ? '–' : String(s.epoch),
        s.stopped ? `${s.state ?? '–'} (stopped)` : (s.state ?? '–'),
        s.lagSec === null ? '–' : `${s.lagSec.toFixed(1)} s`,
        s.recoveryPoint === null ? '–' : clock(s.recoveryPoint.streamTime),
      ], s.owner === null ? 'unowned' : ''),
    ),
  );
}

function row(id, cells, className) {
  const tr = document.createElement('tr');
  tr.dataset.id = id;
  if (className) tr.className = className;
  for (const text of cells) {
    const td = document.createElement('td');
    td.textContent = text;
    tr.append(td);
  }
  return tr;
}

// `vigil cluster status|drain` (docs/scale-out.md, "Status and drain"): what a cluster of nodes looks
// like, and moving a node's streams away, from any machine that reaches the cluster's NATS. NATS
// credentials come from VIGIL_NATS_USER / VIGIL_NATS_PASSWORD, never from argv.
import { Command } from 'commander';
import { VigilError } from '../../../common/errors.js';
import { ClusterAdmin } from '../../cluster/clusterAdmin.js';
import type { ClusterStatus } from '../../cluster/clusterStatus.js';
import { streamClock } from '../../engine/memoryHorizon.js';
import { parseInteger, printJson } from '../options.js';

interface ClusterOptions {
  cluster?: string;
}

const CLUSTER_HELP = 'the cluster\'s NATS, e.g. nats://10.0.0.5:4222[,nats://...] (default $VIGIL_CLUSTER; credentials: VIGIL_NATS_USER / VIGIL_NATS_PASSWORD)';
const DEFAULT_WAIT_S = 120;

export function clusterCommand(): Command {
  const command = new Command('cluster').description('look at and steer a cluster of Vigil nodes on NATS (vigil serve --cluster)');
  command
    .command('status')
    .description('nodes (capacity, streams owned, draining) and streams (owner, lease epoch, replication lag, recovery point)')
    .option('--cluster <nats-urls>', CLUSTER_HELP)
    .option('--json', 'print the status as JSON: {at, nodes: [...], streams: [...]}')
    .action(async (options: ClusterOptions & { json?: boolean }) => {
      await withAdmin(options, async (admin) => {
        const status = await admin.status();
        if (options.json) printJson(status);
        else process.stdout.write(statusTable(status));
      });
    });
  command
    .command('drain')
    .description('hand a node\'s streams over to the other nodes and give it no new ones (until --undo)')
    .argument('<node>', 'node id')
    .option('--cluster <nats-urls>', CLUSTER_HELP)
    .option('--undo', 'let the node take streams again (streams it handed over stay where they went)')
    .option('--wait', 'wait until the node owns no stream (exit 1 after --timeout)')
    .option('--timeout <s>', `with --wait: give up after s seconds (default ${DEFAULT_WAIT_S})`, parseInteger(1, 86_400), DEFAULT_WAIT_S)
    .action(async (nodeId: string, options: ClusterOptions & { undo?: boolean; wait?: boolean; timeout: number }, self: Command) => {
      if (options.undo && options.wait) throw new VigilError('BAD_INPUT', '--wait is for a drain, not with --undo');
      await withAdmin(options, async (admin) => {
        if (options.undo) {
          await admin.undrain(nodeId);
          process.stdout.write(`node ${nodeId} is no longer draining: it may take streams again\n`);
          return;
        }
        await admin.drain(nodeId);
        process.stdout.write(`node ${nodeId} asked to drain: it hands its streams over and takes no new ones\n`);
        if (!options.wait) return;
        const progress = progressLine(nodeId);
        const { drained, last } = await admin.waitDrained(nodeId, { timeoutMs: options.timeout * 1000, onProgress: (p) => progress(p.owned) });
        progress.done();
        if (!drained) {
          self.error(`vigil: node ${nodeId} still owns ${last.owned.length} stream${last.owned.length === 1 ? '' : 's'} after ${options.timeout} s (${last.owned.join(', ')}): do the other nodes have room (capacity) and are they live? (vigil cluster status)`, {
            exitCode: 1,
            code: 'vigil.drainTimeout',
          });
        }
        const moved = last.status.streams.filter((s) => s.owner !== null).map((s) => `${s.id} on ${s.owner}`);
        process.stdout.write(`node ${nodeId} owns no stream${moved.length > 0 ? ` (${moved.join(', ')})` : ''}\n`);
      });
    });
  return command;
}

/** Opens the admin connection for one command and always closes it. */
async function withAdmin(options: ClusterOptions, run: (admin: ClusterAdmin) => Promise<void>): Promise<void> {
  const servers = options.cluster ?? process.env.VIGIL_CLUSTER;
  if (!servers) throw new VigilError('BAD_INPUT', 'no cluster given: pass --cluster nats://host:4222 or set VIGIL_CLUSTER');
  const admin = await ClusterAdmin.open({
    servers,
    ...(process.env.VIGIL_NATS_USER ? { user: process.env.VIGIL_NATS_USER, pass: process.env.VIGIL_NATS_PASSWORD ?? '' } : {}),
  });
  try {
    await run(admin);
  } finally {
    await admin.dispose();
  }
}

/** One line on stderr, rewritten in place on a terminal, else printed when it changes. */
function progressLine(nodeId: string): ((owned: string[]) => void) & { done(): void } {
  const tty = process.stderr.isTTY;
  let last = '';
  const update = (owned: string[]) => {
    const line = `draining ${nodeId}: ${owned.length} stream${owned.length === 1 ? '' : 's'} left${owned.length > 0 ? ` (${owned.join(', ')})` : ''}`;
    if (line === last) return;
    last = line;
    process.stderr.write(tty ? `\r\x1b[K${line}` : `${line}\n`);
  };
  return Object.assign(update, { done: () => void (tty && last !== '' ? process.stderr.write('\n') : undefined) });
}

/** The status as two tables (nodes, then streams). */
export function statusTable(status: ClusterStatus): string {
  const lines = [`cluster at ${status.at}: ${status.nodes.length} node${status.nodes.length === 1 ? '' : 's'}, ${status.streams.length} stream${status.streams.length === 1 ? '' : 's'}`, ''];
  lines.push('| node | capacity | streams | draining | API |', '|---|---|---|---|---|');
  for (const n of status.nodes) lines.push(`| ${n.nodeId} | ${n.capacity} | ${n.streams.length}/${n.capacity}${n.streams.length > 0 ? ` (${n.streams.join(', ')})` : ''} | ${n.draining ? 'yes' : 'no'} | ${n.apiUrl} |`);
  if (status.streams.length === 0) lines.push('', 'no streams');
  else {
    lines.push('', '| stream | owner | epoch | state | replication lag | recovery point |', '|---|---|---|---|---|---|');
    for (const s of status.streams) {
      const owner = s.owner ?? '(none: moving or no room)';
      const state = s.stopped ? `${s.state ?? '-'} (stopped)` : (s.state ?? '-');
      const lag = s.lagSec === null ? '-' : `${s.lagSec.toFixed(1)} s`;
      const point = s.recoveryPoint === null ? '-' : `t=${streamClock(s.recoveryPoint.streamTime)}`;
      lines.push(`| ${s.id} | ${owner} | ${s.epoch ?? '-'} | ${state} | ${lag} | ${point} |`);
    }
  }
  return `${lines.join('\n')}\n`;
}

import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import type { AuthConfig } from '../../../api/auth.js';
import { loadServiceConfig, mqttFromConfig, webhooksFromConfig } from '../../../api/config.js';
import type { ServiceConfig } from '../../../api/schemas/config.js';
import { startServer } from '../../../api/server.js';
import { ClusterNode } from '../../cluster/clusterNode.js';
import { SourcePolicy, type SourcePolicyOptions } from '../../engine/manager/sourcePolicy.js';
import { vigilDataDir } from '../../cacheDir.js';
import { checkRange } from '../../engine/streamManager.js';
import { VigilError } from '../../../common/errors.js';
import { parseInteger, parseKeepFull, parseKvShare, parseSize, tiersFromOptions } from '../options.js';
import { parseByteSize } from '../../../common/byteSize.js';
import { resolveModelDir } from '../resolveModel.js';
import { gateFromOptions, parseGateMaxHold, parseGateOption } from '../gateOption.js';
import { watchShutdown } from '../shutdown.js';
import type { QueryTapMode } from '../../model/queryTapLoader.js';
import { DTYPE_HELP, modelLoadOptions, parseDtypeOption, parseQueryTapsOption, QUERY_TAPS_HELP } from '../modelLoadOptions.js';
import type { GraphDtype } from '../../model/graphFiles.js';

interface ServeOptions {
  config?: string;
  port?: number;
  host?: string;
  data?: string;
  model?: string;
  queryTaps?: QueryTapMode;
  dtype?: GraphDtype;
  token: string[];
  auth: boolean;
  allowFiles?: string;
  allowPrivate?: boolean;
  allowNetwork: string[];
  maxUploadMb?: number;
  quiet?: boolean;
  gate?: 'off' | number;
  gateMaxHold?: number;
  shutdownTimeout?: number;
  budget?: number;
  diskBudget?: number;
  keepFull?: number;
  kvShare?: number;
  archive?: boolean;
  cluster?: string;
  nodeId?: string;
  capacity?: number;
  advertiseUrl?: string;
  clusterReplicas?: number;
  leaseTtl?: number;
}

const collect = (value: string, previous: string[]) => [...previous, value];
const MIN_TOKEN_LENGTH = 16;
/** deploy/systemd/vigil.service's TimeoutStopSec is a little above this. */
const DEFAULT_SHUTDOWN_TIMEOUT_S = 10;

export function serveCommand(): Command {
  return new Command('serve')
    .description('run the REST API, the web page and multi-stream ingest')
    .option('--config <file>', 'vigil.yaml: model, data folder, auth tokens, URL policy, cameras')
    .option('--port <p>', 'port (default 8080; 0 = any free port)', parseInteger(0, 65535))
    .option('--host <addr>', 'address to listen on (default 127.0.0.1)')
    .option('--data <dir>', `data folder (default ${vigilDataDir()})`)
    .option('--model <dir|name>', 'model folder or probe model name (default probe-needle)')
    .option('--query-taps <mode>', `${QUERY_TAPS_HELP} (over the config file's queryTaps)`, parseQueryTapsOption)
    .option('--dtype <dtype>', DTYPE_HELP, parseDtypeOption)
    .option('--token <token>', 'accepted bearer token (repeatable); better: VIGIL_API_TOKENS=a,b in the environment', collect, [])
    .option('--no-auth', 'accept requests without a token (local use only)')
    .option('--allow-files <dir>', 'let API callers ingest server-side video files from this folder')
    .option('--allow-private', 'let source URLs reach loopback and private networks')
    .option('--allow-network <cidr>', 'a network source URLs may reach despite the private-network rule (repeatable)', collect, [])
    .option('--max-upload-mb <n>', 'largest uploaded video in MiB (default 2048)', parseInteger(1, 1024 * 1024))
    .option('--budget <size>', 'disk budget of each stream that sets none, e.g. 20GB (1e9 bytes) or 1.5GiB (2^30 bytes); default 20GB', parseSize)
    .option('--disk-budget <size>', 'disk budget of the whole data folder, shared equally among its streams (each keeps the smaller of its own budget and its share)', parseSize)
    .option('--keep-full <s>', 'memory tiers of streams that set none: the newest stream seconds kept at the stream\'s dtype before demotion to 4-bit KV (default 1800)', parseKeepFull)
    .option('--kv-share <x>', 'memory tiers of streams that set none: share of the budget (0..1) that chunks holding KV may take before the oldest go to the archive (default 0.4)', parseKvShare)
    .option('--no-archive', 'memory tiers of streams that set none: no archive tier (KV tiers only, then deletion)')
    .option('--gate <off|threshold>', 'frame gating of streams that set none: encode a frame only when this fraction of it changed since the last encoded one (default 0.005; off: every frame)', parseGateOption)
    .option('--gate-max-hold <s>', 'frame gating of streams that set none: encode a frame at least every s seconds (default 60)', parseGateMaxHold)
    .option('--cluster <nats-urls>', 'join a cluster of nodes on NATS JetStream, e.g. nats://10.0.0.5:4222,nats://10.0.0.6:4222 (credentials: VIGIL_NATS_USER / VIGIL_NATS_PASSWORD; docs/scale-out.md)')
    .option('--node-id <name>', 'this node\'s id in the cluster (default the host name)')
    .option('--capacity <n>', 'streams this node may own in the cluster (default 4)', parseInteger(0, 10_000))
    .option('--advertise-url <url>', 'where the other nodes reach this node\'s API (default the listening address)')
    .option('--cluster-replicas <n>', 'JetStream replicas of the cluster\'s buckets: 3 on a 3-server NATS cluster (default 1)', parseInteger(1, 5))
    .option('--lease-ttl <s>', 'seconds a stream\'s owner may go silent before another node takes it over (default 5; 10-12 on a NATS cluster: docs/scale-out.md)', parseInteger(1, 600))
    .option('--quiet', 'no request log')
    .option('--shutdown-timeout <s>', `seconds a graceful stop (SIGTERM/SIGINT/SIGHUP) may take before the process exits anyway (default ${DEFAULT_SHUTDOWN_TIMEOUT_S})`, parseInteger(1, 3600))
    .action(async (options: ServeOptions) => {
      const config: ServiceConfig = options.config ? loadServiceConfig(options.config) : {};
      // Secrets are read from the environment variables the config names, never from argv.
      const webhooks = webhooksFromConfig(config, process.env, options.config ? path.dirname(options.config) : '.');
      const mqtt = mqttFromConfig(config, process.env, options.config ? path.dirname(options.config) : '.');
      const auth = authConfig(options, config);
      for (const range of options.allowNetwork) checkRange(range);
      const host = options.host ?? config.host ?? '127.0.0.1';
      const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
      const modelDir = resolveModelDir(options.model ?? config.model ?? 'probe-needle', { dtype: options.dtype });
      const graceS = options.shutdownTimeout ?? DEFAULT_SHUTDOWN_TIMEOUT_S;
      // Listening for signals (and for the launcher's exit) before the model loads: a stop asked
      // for during start-up is honoured once the server is up.
      const shutdown = watchShutdown({ log, graceMs: graceS * 1000 });
      // --gate / --gate-max-hold: the gate of new streams that set none, over the config file's defaults.
      const gate = gateFromOptions(options.gate, options.gateMaxHold);
      // A field the options leave out keeps the config file's value.
      const fileGate = config.defaults?.gate;
      if (gate !== undefined) config.defaults = { ...config.defaults, gate: gate === 'off' || fileGate === undefined || fileGate === 'off' ? gate : { ...fileGate, ...gate } };
      // --keep-full / --kv-share / --no-archive: field by field over the config file's default tiers.
      const tiers = tiersFromOptions(options);
      if (tiers !== undefined) config.defaults = { ...config.defaults, tiers: { ...config.defaults?.tiers, ...tiers } };
      const policy = {
        ...(config.urlPolicy?.allowedSchemes ? { allowedSchemes: config.urlPolicy.allowedSchemes } : {}),
        allowPrivateNetworks: options.allowPrivate ?? config.urlPolicy?.allowPrivateNetworks ?? false,
        allowNetworks: [...(config.urlPolicy?.allowNetworks ?? []), ...options.allowNetwork],
        filesDir: options.allowFiles ?? config.urlPolicy?.allowFilesDir ?? null,
      };
      // Cluster mode: NATS answers (and has JetStream) before anything else starts, or the start fails here.
      const clusterNode = options.cluster ? await connectCluster(options, policy, config, log) : null;
      const running = await startServer({
        host,
        port: options.port ?? config.port ?? 8080,
        auth,
        log,
        requestLog: !options.quiet,
        ...(options.maxUploadMb !== undefined ? { maxUploadBytes: options.maxUploadMb * 1024 ** 2 } : config.limits?.maxUploadBytes ? { maxUploadBytes: config.limits.maxUploadBytes } : {}),
        ...(config.limits?.maxBodyBytes ? { maxBodyBytes: config.limits.maxBodyBytes } : {}),
        cameras: config.cameras ?? [],
        ...(clusterNode ? { clusterNode: { node: clusterNode, ...(options.advertiseUrl ? { url: options.advertiseUrl } : {}) } } : {}),
        manager: {
          dataDir: options.data ?? config.data ?? vigilDataDir(),
          model: modelDir,
          ...((options.queryTaps ?? config.queryTaps) || options.dtype ? { modelOptions: modelLoadOptions({ dtype: options.dtype, queryTaps: options.queryTaps ?? config.queryTaps }) } : {}),
          policy,
          // Cluster mode: the node opens only the streams whose leases it takes; every frame waits while
          // a lapsed lease is taken back (NATS out of reach), then passes the lease's fence.
          ...(clusterNode ? clusterNode.managerOptions() : {}),
          limits: {
            ...(config.limits?.maxStreams ? { maxStreams: config.limits.maxStreams } : {}),
            ...(config.limits?.questionsPerStream ? { questionsPerStream: config.limits.questionsPerStream } : {}),
            ...(config.limits?.questionsTotal ? { questionsTotal: config.limits.questionsTotal } : {}),
          },
          ...(config.defaults || options.budget !== undefined ? { defaults: { ...config.defaults, ...(options.budget !== undefined ? { budget: options.budget } : {}) } } : {}),
          ...(webhooks.length > 0 ? { webhooks } : {}),
          ...(mqtt.length > 0 ? { mqtt } : {}),
          ...(options.diskBudget !== undefined || config.diskBudget !== undefined
            ? { diskBudget: options.diskBudget ?? parseByteSize(config.diskBudget, 'diskBudget') }
            : {}),
        },
      });
      const authText = 'disabled' in auth ? 'OFF (--no-auth)' : `bearer token (${auth.tokens.length} accepted)`;
      log(`vigil serve: listening on ${running.url} (auth: ${authText}); web page at ${running.url}/`);
      if ('disabled' in auth && !isLoopback(host)) log(`WARNING: auth is off and the server listens on ${host}: anyone on the network can use it`);
      const started = running.manager.then(
        (m) => {
          log(`ready: model ${modelDir}, ${m.list().length} streams`);
          return null;
        },
        (error: unknown) => {
          log(`could not start: ${(error as Error).message}`);
          return error;
        },
      );
      // A cluster node that cannot join (its id in use, NATS gone) stops: it must not serve alone.
      const failedJoin = clusterNode ? started.then((error) => (error === null ? new Promise<never>(() => {}) : { error })) : new Promise<never>(() => {});
      const stop = await Promise.race([shutdown.requested, failedJoin]);
      const reason = typeof stop === 'string' ? stop : 'could not join the cluster';
      log(`shutting down (${reason}): stopping ingest and saving memories (at most ${graceS} s; a second signal exits at once)`);
      await running.close();
      shutdown.finished();
      log('stopped');
      // The command fails like any other (exit code 2 for a configuration to fix, e.g. a node id in use).
      if (typeof stop !== 'string') throw stop.error;
    });
}

async function connectCluster(options: ServeOptions, policy: SourcePolicyOptions, config: ServiceConfig, log: (line: string) => void): Promise<ClusterNode> {
  if (config.cameras && config.cameras.length > 0) throw new VigilError('BAD_CONFIG', 'cameras in the config file are not supported in cluster mode yet: create them through the API (POST /v1/streams) on any node');
  return ClusterNode.connect({
    servers: options.cluster!,
    nodeId: options.nodeId ?? os.hostname().replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 64),
    capacity: options.capacity ?? 4,
    policy: new SourcePolicy(policy).outbound,
    ...(process.env.VIGIL_NATS_USER ? { user: process.env.VIGIL_NATS_USER, pass: process.env.VIGIL_NATS_PASSWORD ?? '' } : {}),
    ...(options.clusterReplicas !== undefined ? { replicas: options.clusterReplicas } : {}),
    ...(options.leaseTtl !== undefined ? { leaseTtlMs: options.leaseTtl * 1000 } : {}),
    log,
  });
}

/** Tokens from --token, then VIGIL_API_TOKENS / VIGIL_API_TOKEN, then the config file; none means refuse to start. */
function authConfig(options: ServeOptions, config: ServiceConfig): AuthConfig {
  if (!options.auth || config.auth?.disabled) return { disabled: true };
  const fromEnv = (process.env.VIGIL_API_TOKENS ?? process.env.VIGIL_API_TOKEN ?? '')
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  const tokens = options.token.length > 0 ? options.token : fromEnv.length > 0 ? fromEnv : (config.auth?.tokens ?? []);
  if (tokens.length === 0) {
    throw new VigilError('BAD_CONFIG', 'no API token: set VIGIL_API_TOKENS=<token>, pass --token, list auth.tokens in the config file, or use --no-auth for local use');
  }
  const short = tokens.find((t) => t.length < MIN_TOKEN_LENGTH);
  if (short !== undefined) throw new VigilError('BAD_CONFIG', `API tokens must have at least ${MIN_TOKEN_LENGTH} characters (one has ${short.length})`);
  return { tokens };
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

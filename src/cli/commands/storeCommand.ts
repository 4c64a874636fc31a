import fs from 'node:fs';
import { Command } from 'commander';
import { ChunkStore } from '../../../memory/store/index.js';
import { StreamIndex } from '../../../retrieval/index.js';
import { vigilDataDir } from '../../cacheDir.js';
import { listStreamIds, streamDir, streamIndexDir, streamStoreDir } from '../../engine/dataLayout.js';
import { storedChunks } from '../../engine/storedChunks.js';
import { VigilError } from '../../../common/errors.js';
import { printJson } from '../options.js';

interface StoreOptions {
  data: string;
  stream?: string;
  json?: boolean;
}

function selectedStreams(options: StoreOptions): string[] {
  if (!fs.existsSync(options.data)) throw new VigilError('FILE_NOT_FOUND', `data folder not found: ${options.data}`);
  const ids = options.stream ? [options.stream] : listStreamIds(options.data);
  for (const id of ids) {
    if (!fs.existsSync(streamStoreDir(streamDir(options.data, id)))) {
      throw new VigilError('FILE_NOT_FOUND', `stream '${id}' has no memory in ${options.data}`);
    }
  }
  return ids;
}

/**
 * Opens a stream's store. `read-only` (stats, verify): no lock, no recovery, nothing written, so a
 * running `vigil serve` may keep writing the folder meanwhile. `write` (rebuild-index): takes the
 * store's lock (refused while a server holds it); opening runs recovery, which only ever drops data
 * that was never committed.
 */
function openStore(options: StoreOptions, id: string, mode: 'read-only' | 'write'): ChunkStore {
  return ChunkStore.open({ dir: streamStoreDir(streamDir(options.data, id)), create: false, readOnly: mode === 'read-only' });
}

const mib = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MiB`;
const span = (a: number | null, b: number | null) => (a === null || b === null ? '-' : `${a.toFixed(1)}s .. ${b.toFixed(1)}s`);

function withCommonOptions(command: Command): Command {
  return command
    .option('--data <dir>', 'data folder', vigilDataDir())
    .option('--stream <id>', 'only this stream (default: every stream in the data folder)')
    .option('--json', 'print JSON');
}

export function storeCommand(): Command {
  const store = new Command('store').description('inspect and repair stream memories on disk');

  withCommonOptions(store.command('stats').description('chunk counts, bytes by dtype, time span and gaps of each stream (read-only: works beside a running server)')).action(async (options: StoreOptions) => {
    const rows = [];
    for (const id of selectedStreams(options)) {
      const s = openStore(options, id, 'read-only');
      try {
        const stats = s.stats();
        rows.push({ stream: id, recovery: s.recovery, gaps: s.gaps(), ...stats });
      } finally {
        await s.dispose();
      }
    }
    if (options.json) return printJson(rows);
    if (rows.length === 0) process.stdout.write(`no streams in ${options.data}\n`);
    for (const r of rows) {
      const bytes = Object.entries(r.bytesByDtype).filter(([, b]) => b > 0).map(([d, b]) => `${d} ${mib(b)}`).join(', ') || '0';
      process.stdout.write(
        `${r.stream}: ${r.chunkCount} chunks (${r.firstChunkId ?? '-'}..${r.lastChunkId ?? '-'}), ${bytes} in ${r.segments.length} segments, ` +
          `stream time ${span(r.tStart, r.tEnd)}, ${r.gaps.length} gaps\n`,
      );
    }
  });

  withCommonOptions(store.command('verify').description('read and checksum every chunk, changing nothing (works beside a running server); exit code 1 when anything is damaged')).action(
    async (options: StoreOptions, command: Command) => {
      const reports = [];
      for (const id of selectedStreams(options)) {
        const s = openStore(options, id, 'read-only');
        try {
          const report = await s.verify();
          const indexDir = streamIndexDir(streamDir(options.data, id));
          let index: { consistent: boolean; missing: number; stale: number } | null = null;
          if (fs.existsSync(indexDir)) {
            const stored = new Set([...storedChunks(s)].map((m) => m.chunkId));
            try {
              const ids = (await StreamIndex.load(indexDir)).chunkIds();
              const indexed = new Set(ids);
              const missing = [...stored].filter((i) => !indexed.has(i)).length;
              const stale = ids.filter((i) => !stored.has(i)).length;
              index = { consistent: missing === 0 && stale === 0, missing, stale };
            } catch {
              index = { consistent: false, missing: stored.size, stale: 0 };
            }
          }
          reports.push({ stream: id, recovery: s.recovery, ...report, index });
        } finally {
          await s.dispose();
        }
      }
      const damaged = reports.some((r) => r.damaged.length > 0);
      if (options.json) printJson(reports);
      else {
        for (const r of reports) {
          const dropped = r.recovery.droppedChunks.length;
          process.stdout.write(
            `${r.stream}: ${r.checkedChunks} chunks checked, ${r.damaged.length} damaged` +
              (r.damaged.length ? ` (${r.damaged.map((d) => `${d.chunkId}: ${d.reason}`).join(', ')})` : '') +
              (dropped ? `; recovery dropped ${dropped} uncommitted or torn chunks` : '') +
              (r.index ? `; index ${r.index.consistent ? 'consistent' : `needs rebuild (${r.index.missing} missing, ${r.index.stale} stale)`}` : '; no saved index') +
              '\n',
          );
        }
      }
      if (damaged) command.error('damaged chunks found', { exitCode: 1, code: 'vigil.damaged' });
    },
  );

  withCommonOptions(store.command('rebuild-index').description("rebuild each stream's retrieval index from the manifest's stored vectors")).action(
    async (options: StoreOptions) => {
      const results = [];
      for (const id of selectedStreams(options)) {
        const s = openStore(options, id, 'write');
        try {
          const started = performance.now();
          const { numLayers, numKvHeads, headDim } = s.geometry;
          const index = await StreamIndex.rebuild({ numLayers, dim: numKvHeads * headDim }, storedChunks(s));
          await index.save(streamIndexDir(streamDir(options.data, id)));
          results.push({ stream: id, chunks: index.size, seconds: Number(((performance.now() - started) / 1000).toFixed(2)) });
        } finally {
          await s.dispose();
        }
      }
      if (options.json) return printJson(results);
      for (const r of results) process.stdout.write(`${r.stream}: index rebuilt over ${r.chunks} chunks in ${r.seconds} s\n`);
    },
  );
  return store;
}

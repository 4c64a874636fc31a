import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { ChunkStore, type ChunkFailure, type RecoveryReport } from '../../../memory/store/index.js';
import { StreamIndex } from '../../../retrieval/index.js';
import { vigilDataDir } from '../../cacheDir.js';
import { listStreamIds, streamDir, streamIndexBlocksDir, streamIndexDir, streamStoreDir } from '../../engine/dataLayout.js';
import { diffSortedIds, rebuildIndex, reconcileIndex, type SkippedChunk, streamIndexOptions, unindexableReason } from '../../engine/indexReconcile.js';
import { isVigilError, VigilError } from '../../../common/errors.js';
import { printJson } from '../options.js';
import { shortBytes } from '../../../common/byteSize.js';
import { folderBytes } from '../../../memory/store/budget.js';
import { readRecord } from '../../engine/manager/streamRecord.js';
import { budgetedFolders } from '../../engine/manager/streamBudget.js';
import { type MemoryHorizon, memoryHorizon, streamClock } from '../../engine/memoryHorizon.js';

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
 * running `vigil serve` may keep writing the folder meanwhile. `write` (rebuild-index, repair):
 * takes the store's lock (STORE_LOCKED while a server holds it); opening runs recovery, which only
 * ever drops data that was never committed.
 */
function openStore(options: StoreOptions, id: string, mode: 'read-only' | 'write'): ChunkStore {
  return ChunkStore.open({ dir: streamStoreDir(streamDir(options.data, id)), create: false, readOnly: mode === 'read-only' });
}

/** One dropped chunk in the repair report: its stream time, so a user can tell what was lost. */
interface DroppedChunk {
  chunkId: number;
  tStart: number | null;
  tEnd: number | null;
  reason: ChunkFailure['reason'];
  message: string;
}

interface RepairReport {
  stream: string;
  /** What opening for writing repaired first (torn or uncommitted tails of a crashed session). */
  recovery: RecoveryReport;
  checkedChunks: number;
  /** Damaged chunks whose rows were removed from the manifest. */
  dropped: DroppedChunk[];
  /** Chunks that failed with a read error ('io'), which may be passing: kept, so a rerun can retry. */
  unreadable: ChunkFailure[];
  /** null: the stream has no saved index (the server builds one when it opens the stream). */
  index: { entriesRemoved: number; entriesAdded: number; rebuilt: boolean; rebuildReason: string | null; skipped: SkippedChunk[]; saved: boolean } | null;
}

/**
 * verify() the store (opened for writing), drop what it found damaged, and make the saved index
 * agree: the dropped ids out (plus whatever else reconciliation finds), or rebuilt when it does not
 * load. An 'io' failure is not proof of damage (a busy or flaky disk), so those rows are kept.
 */
async function repairStream(stream: string, s: ChunkStore, indexDir: string): Promise<RepairReport> {
  const report = await s.verify();
  const damaged = report.damaged.filter((d) => d.reason !== 'io');
  const unreadable = report.damaged.filter((d) => d.reason === 'io');
  // Times before the rows go (only the damaged rows are read).
  const times = new Map(s.readMetas(damaged.map((d) => d.chunkId)).map((m) => [m.chunkId, m]));
  const droppedIds = new Set(s.dropChunks(damaged.map((d) => d.chunkId)));
  const dropped = damaged
    .filter((d) => droppedIds.has(d.chunkId))
    .map((d) => ({ chunkId: d.chunkId, tStart: times.get(d.chunkId)?.tStart ?? null, tEnd: times.get(d.chunkId)?.tEnd ?? null, reason: d.reason, message: d.message }));

  let index: RepairReport['index'] = null;
  if (fs.existsSync(indexDir)) {
    const { numLayers, numKvHeads, headDim } = s.geometry;
    const dim = numKvHeads * headDim;
    let loaded: StreamIndex | undefined;
    let rebuildReason: string | null = null;
    try {
      // Any similarity space: repair keeps the one the index was built for.
      loaded = await StreamIndex.load(indexDir, { numLayers, dim, sealing: { dir: streamIndexBlocksDir(path.dirname(indexDir)) } });
    } catch (error) {
      rebuildReason = `saved index not usable: ${error instanceof Error ? error.message : String(error)}`;
    }
    if (loaded) {
      const entriesRemoved = loaded.removeChunks(droppedIds);
      const r = reconcileIndex(loaded, s);
      const changed = entriesRemoved + r.removed + r.added > 0;
      await loaded.idle();
      if (changed) await loaded.save(indexDir);
      await loaded.dispose();
      index = { entriesRemoved: entriesRemoved + r.removed, entriesAdded: r.added, rebuilt: false, rebuildReason, skipped: r.skipped, saved: changed };
    } else {
      // Unreadable: its space is unknown, so the default ('ip'); a server opened with another rebuilds again.
      const { index: rebuilt, skipped } = await rebuildIndex(s, streamIndexOptions(path.dirname(indexDir), numLayers, dim));
      await rebuilt.save(indexDir);
      await rebuilt.dispose();
      index = { entriesRemoved: 0, entriesAdded: rebuilt.size, rebuilt: true, rebuildReason, skipped, saved: true };
    }
  }
  return { stream, recovery: s.recovery, checkedChunks: report.checkedChunks, dropped, unreadable, index };
}

/** The rows among `ids` that the index refuses, reading their representatives a page at a time. */
function unindexableAmong(s: ChunkStore, ids: Uint32Array): SkippedChunk[] {
  const { numLayers, numKvHeads, headDim } = s.geometry;
  const out: SkippedChunk[] = [];
  for (let i = 0; i < ids.length; i += 256) {
    for (const meta of s.readMetas(Array.from(ids.subarray(i, i + 256)))) {
      const reason = unindexableReason(meta, numLayers, numKvHeads * headDim);
      if (reason !== null) out.push({ chunkId: meta.chunkId, reason });
    }
  }
  return out;
}

const skippedText = (skipped: readonly SkippedChunk[]) =>
  skipped.length === 0 ? '' : `; ${skipped.length} unindexable rows skipped (${skipped.map((k) => `${k.chunkId}: ${k.reason}`).join(', ')})`;

function repairLine(r: RepairReport): string {
  const time = (d: DroppedChunk) => (d.tStart === null || d.tEnd === null ? '' : ` at ${d.tStart.toFixed(1)}s..${d.tEnd.toFixed(1)}s`);
  const parts = [`${r.checkedChunks} chunks checked`];
  const recovered = r.recovery.droppedChunks.length;
  if (recovered > 0) parts.push(`recovery dropped ${recovered} uncommitted or torn chunks`);
  parts.push(
    r.dropped.length === 0 ? 'no damaged chunks' : `${r.dropped.length} damaged dropped (${r.dropped.map((d) => `${d.chunkId}${time(d)}: ${d.reason}`).join(', ')})`,
  );
  if (r.unreadable.length > 0) parts.push(`${r.unreadable.length} unreadable kept (${r.unreadable.map((d) => `${d.chunkId}: ${d.message}`).join(', ')}): run repair again`);
  if (r.index === null) parts.push('no saved index');
  else if (r.index.rebuilt) parts.push(`index rebuilt over ${r.index.entriesAdded} chunks (${r.index.rebuildReason})`);
  else if (!r.index.saved) parts.push('index consistent');
  else parts.push(`index: ${r.index.entriesRemoved} entries removed, ${r.index.entriesAdded} added`);
  return `${r.stream}: ${parts.join('; ')}${r.index ? skippedText(r.index.skipped) : ''}\n`;
}

/** The horizon in one line: what memory holds by tier, the outages in it, what retention forgot. */
function horizonLine(h: MemoryHorizon): string {
  if (h.from === null || h.to === null) return 'horizon: empty';
  const spans = h.spans.map((x) => `${x.tier} ${streamClock(x.from)}–${streamClock(x.to)} (${x.chunks} chunks)`).join(', ');
  const gaps = h.gaps.length === 0 ? 'no gaps' : `${h.gaps.length}${h.gapsTruncated ? '+' : ''} gaps (${h.gaps.slice(0, 3).map((g) => `${streamClock(g.from)}–${streamClock(g.to)} ${g.reason}`).join('; ')}${h.gaps.length > 3 ? '; …' : ''})`;
  const forgotten = h.forgottenBefore === null ? 'nothing forgotten' : `forgotten before ${streamClock(h.forgottenBefore)} (${h.forgottenChunks} chunks)`;
  return `horizon ${streamClock(h.from)}–${streamClock(h.to)}: ${spans}; ${gaps}; ${forgotten}`;
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

  withCommonOptions(store.command('stats').description('chunk counts, bytes by dtype, time span, gaps and memory horizon of each stream (read-only: works beside a running server)')).action(async (options: StoreOptions) => {
    const rows = [];
    for (const id of selectedStreams(options)) {
      const s = openStore(options, id, 'read-only');
      try {
        const stats = s.stats();
        const dir = streamDir(options.data, id);
        // Measured like the server's budget: the chunk store and the index folders.
        const usedBytes = folderBytes([streamStoreDir(dir), ...budgetedFolders(dir)]);
        const budgetBytes = readRecord(dir)?.settings.budget ?? null;
        const disk = { budgetBytes, usedBytes, percent: budgetBytes === null ? null : Math.round((10_000 * usedBytes) / budgetBytes) / 100 };
        const horizon = memoryHorizon(stats, (from, to, limit) => s.gaps({ from, to, limit }));
        rows.push({ stream: id, recovery: s.recovery, gaps: s.gaps(), ...stats, budgetBytes, disk, horizon });
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
          `stream time ${span(r.tStart, r.tEnd)}, ${r.gaps.length} gaps, ` +
          `disk ${shortBytes(r.disk.usedBytes)}${r.disk.budgetBytes === null ? ' (no budget)' : ` of budget ${shortBytes(r.disk.budgetBytes)} (${r.disk.percent}%)`}\n`,
      );
      process.stdout.write(`  ${horizonLine(r.horizon)}\n`);
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
          let index: { consistent: boolean; missing: number; stale: number; unindexable: SkippedChunk[] } | null = null;
          if (fs.existsSync(indexDir)) {
            // Ids only (a narrow manifest query); representatives are read only for rows the index lacks.
            const stored = s.chunkIds();
            let indexed: Uint32Array | undefined;
            try {
              const loaded = await StreamIndex.load(indexDir, { sealing: { dir: streamIndexBlocksDir(streamDir(options.data, id)), readOnly: true } });
              indexed = loaded.chunkIdRange();
              await loaded.dispose();
            } catch {
              index = { consistent: false, missing: stored.length, stale: 0, unindexable: [] };
            }
            if (indexed) {
              const { onlyInA: missing, onlyInB: stale } = diffSortedIds(stored, indexed);
              // A row the index refuses (non-finite values) is left out on purpose, not missing.
              const unindexable = unindexableAmong(s, missing);
              const lacking = missing.length - unindexable.length;
              index = { consistent: lacking === 0 && stale.length === 0, missing: lacking, stale: stale.length, unindexable };
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
              (r.index ? skippedText(r.index.unindexable) : '') +
              '\n',
          );
        }
      }
      if (damaged) command.error('damaged chunks found', { exitCode: 1, code: 'vigil.damaged' });
    },
  );

  withCommonOptions(
    store.command('rebuild-index').description("rebuild each stream's retrieval index from the manifest's stored vectors; rows that cannot be indexed (non-finite values) are skipped and listed"),
  ).action(async (options: StoreOptions) => {
    const results = [];
    for (const id of selectedStreams(options)) {
      const s = openStore(options, id, 'write');
      try {
        const started = performance.now();
        const { numLayers, numKvHeads, headDim } = s.geometry;
        const { index, skipped } = await rebuildIndex(s, streamIndexOptions(streamDir(options.data, id), numLayers, numKvHeads * headDim));
        await index.save(streamIndexDir(streamDir(options.data, id)));
        await index.dispose();
        results.push({ stream: id, chunks: index.size, skipped, seconds: Number(((performance.now() - started) / 1000).toFixed(2)) });
      } finally {
        await s.dispose();
      }
    }
    if (options.json) return printJson(results);
    for (const r of results) process.stdout.write(`${r.stream}: index rebuilt over ${r.chunks} chunks in ${r.seconds} s${skippedText(r.skipped)}\n`);
  });

  withCommonOptions(
    store
      .command('repair')
      .description(
        "verify each stream, drop its damaged chunks and their index entries, and report them; takes the store's lock (refused while vigil serve holds it); exit 0 when repaired or nothing to do",
      ),
  ).action(async (options: StoreOptions, command: Command) => {
    const reports: RepairReport[] = [];
    const refused: Array<{ stream: string; error: VigilError }> = [];
    for (const id of selectedStreams(options)) {
      let s: ChunkStore;
      try {
        s = openStore(options, id, 'write');
      } catch (error) {
        // Another stream may still be repairable; the refusal is reported (and fails the run) below.
        if (isVigilError(error) && error.code === 'STORE_LOCKED') {
          refused.push({ stream: id, error });
          continue;
        }
        throw error;
      }
      try {
        reports.push(await repairStream(id, s, streamIndexDir(streamDir(options.data, id))));
      } finally {
        await s.dispose();
      }
    }
    if (options.json) printJson([...reports, ...refused.map((r) => ({ stream: r.stream, refused: { code: r.error.code, message: r.error.message } }))]);
    else {
      if (reports.length === 0 && refused.length === 0) process.stdout.write(`no streams in ${options.data}\n`);
      for (const r of reports) process.stdout.write(repairLine(r));
    }
    if (refused.length > 0) {
      throw new VigilError(
        'STORE_LOCKED',
        `repair refused for ${refused.map((r) => r.stream).join(', ')}: ${refused[0]!.error.message}; stop the process that holds it (e.g. vigil serve) and run repair again`,
      );
    }
    if (reports.some((r) => r.unreadable.length > 0)) command.error('some chunks could not be read (io): kept; run repair again', { exitCode: 1, code: 'vigil.unreadable' });
  });
  return store;
}

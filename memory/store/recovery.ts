// Open-time recovery: make every manifest row point at an intact record, and cut away every
// byte no row accounts for at the end of a segment. Rules (docs/memory-store.md):
//  1. A row whose segment file is missing or has a damaged header is dropped.
//  2. A row whose record extends past the end of its file is dropped (the file was cut short).
//  3. Payloads are checksummed where a crash could have damaged them: with 'full', everywhere;
//     with 'auto', only after an unclean shutdown under fsync 'none', in the segments past the last
//     one known to be synced. (Under the other policies a row commits only after its payload is
//     fsynced, so committed payloads cannot be torn by a crash.) Damaged rows are dropped.
//  4. Rows are dropped in one transaction before any file is touched, so no row ever points at
//     bytes that are gone.
//  5. Each segment is then truncated to the end of its last committed record (a torn or
//     uncommitted tail); a segment with no committed record is deleted.
import fs from 'node:fs';
import { VigilError } from '../../common/errors.js';
import type { Manifest, StreamMeta } from './manifest.js';
import type { ChunkFailure, ChunkGeometry, RecoveryReport } from './types.js';
import { checkRecord } from './recordCheck.js';
import { decodeSegmentHeader, SEGMENT_HEADER_BYTES } from './recordFormat.js';
import { planReads } from './readPlan.js';
import { fsyncDir, listSegmentFiles, segmentPath } from './segmentFiles.js';
import { readRangeSync } from './syncRead.js';

const RECOVERY_READ_BYTES = 16 * 1024 * 1024;

export interface RecoveryOutcome {
  report: RecoveryReport;
  /** Highest segment id seen in files or rows (new segments are numbered above it). */
  maxSegmentSeen: number;
}

export function recoverStore(
  dir: string,
  manifest: Manifest,
  meta: StreamMeta,
  geometry: ChunkGeometry,
  mode: 'auto' | 'full',
): RecoveryOutcome {
  const report: RecoveryReport = {
    cleanShutdown: meta.cleanShutdown,
    droppedChunks: [],
    truncatedSegments: [],
    deletedSegments: [],
    checkedPayloads: 0,
  };
  const files = new Map(listSegmentFiles(dir).map((f) => [f.segment, f.size]));
  const badHeader = new Map<number, string>();
  for (const segment of files.keys()) {
    const fd = fs.openSync(segmentPath(dir, segment), 'r');
    try {
      const h = decodeSegmentHeader(readRangeSync(fd, 0, SEGMENT_HEADER_BYTES));
      if (!h.ok && h.newerVersion) {
        throw new VigilError('STORE_CORRUPT', `${segmentPath(dir, segment)}: ${h.message}; written by a newer Vigil?`);
      }
      if (!h.ok) badHeader.set(segment, h.message);
      else if (h.segmentId !== segment) badHeader.set(segment, `header names segment ${h.segmentId}`);
    } finally {
      fs.closeSync(fd);
    }
  }

  const drop = new Map<number, ChunkFailure>();
  const dropRow = (chunkId: number, reason: ChunkFailure['reason'], message: string): void => {
    if (!drop.has(chunkId)) drop.set(chunkId, { chunkId, reason, message: `chunk ${chunkId}: ${message}` });
  };
  // The persisted per-segment summaries (kept with the rows): no aggregate over the chunk rows.
  const summaries = manifest.segmentSummaries();
  const checkPayloads =
    mode === 'full' || (!meta.cleanShutdown && meta.sessionFsync === 'none');
  for (const s of summaries) {
    const size = files.get(s.segment);
    const locs = () => manifest.locationsInSegments([s.segment]);
    if (size === undefined) {
      for (const l of locs()) dropRow(l.chunkId, 'missing-segment', `segment ${s.segment} is missing`);
      continue;
    }
    const bad = badHeader.get(s.segment);
    if (bad !== undefined) {
      for (const l of locs()) dropRow(l.chunkId, 'bad-header', `segment ${s.segment}: ${bad}`);
      continue;
    }
    if (s.committedEnd > size) {
      for (const l of locs()) {
        if (l.offset + l.length > size) dropRow(l.chunkId, 'truncated', `record ends at ${l.offset + l.length}, file at ${size}`);
      }
    }
    if (checkPayloads && (mode === 'full' || s.segment > meta.syncedThroughSegment)) {
      const fd = fs.openSync(segmentPath(dir, s.segment), 'r');
      try {
        const intact = locs().filter((l) => !drop.has(l.chunkId));
        for (const run of planReads(intact, { maxGapBytes: 1 << 20, maxRunBytes: RECOVERY_READ_BYTES })) {
          const buf = readRangeSync(fd, run.offset, run.length);
          for (const l of run.items) {
            report.checkedPayloads++;
            const f = checkRecord(buf, l.offset - run.offset, l, geometry);
            if (f !== null) dropRow(l.chunkId, f.reason, f.message);
          }
        }
      } finally {
        fs.closeSync(fd);
      }
    }
  }
  if (drop.size > 0) manifest.deleteChunks([...drop.keys()]);
  report.droppedChunks = [...drop.values()].sort((a, b) => a.chunkId - b.chunkId);

  // Files last: cut uncommitted tails, delete segments nothing points into.
  for (const [segment, size] of files) {
    const end = manifest.summaries.get(segment)?.committedEnd;
    if (end === undefined) {
      fs.rmSync(segmentPath(dir, segment), { force: true });
      report.deletedSegments.push(segment);
    } else if (size > end) {
      const fd = fs.openSync(segmentPath(dir, segment), 'r+');
      try {
        fs.ftruncateSync(fd, end);
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      report.truncatedSegments.push({ segment, fromBytes: size, toBytes: end });
    }
  }
  if (report.deletedSegments.length > 0) fsyncDir(dir);
  // A loop, not Math.max(...): the segment count grows with the stream's history.
  let maxSegmentSeen = 0;
  for (const segment of files.keys()) if (segment > maxSegmentSeen) maxSegmentSeen = segment;
  for (const s of summaries) if (s.segment > maxSegmentSeen) maxSegmentSeen = s.segment;
  return { report, maxSegmentSeen };
}

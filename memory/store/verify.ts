// Full verification: read every committed record and check it by the same rules as reads.
import type { Manifest } from './manifest.js';
import type { VerifyReport } from './types.js';
import { forEachConcurrent } from './asyncRead.js';
import { planReads } from './readPlan.js';
import { checkLayerChecksums, checkRecord } from './recordCheck.js';
import { readRunBuffer, type RunReadContext } from './runReader.js';
import { listSegmentFiles } from './segmentFiles.js';

export interface VerifyOptions {
  dir: string;
  /** The segment being appended to (its file may hold only pending records: not "unreferenced"). */
  activeSegment: number | null;
  maxGapBytes: number;
  maxRunBytes: number;
  concurrency: number;
}

export async function verifyStore(ctx: RunReadContext, manifest: Manifest, o: VerifyOptions): Promise<VerifyReport> {
  const report: VerifyReport = { checkedChunks: 0, damaged: [], unreferencedSegments: [], bytesRead: 0 };
  const summaries = manifest.segmentSummaries();
  const referenced = new Set(summaries.map((s) => s.segment));
  for (const f of listSegmentFiles(o.dir)) {
    if (!referenced.has(f.segment) && f.segment !== o.activeSegment) report.unreferencedSegments.push(f.segment);
  }
  // One segment's locations at a time keeps memory independent of the stream's length.
  for (const s of summaries) {
    const runs = planReads(manifest.locationsInSegments([s.segment]), { maxGapBytes: o.maxGapBytes, maxRunBytes: o.maxRunBytes });
    await forEachConcurrent(runs, o.concurrency, async (run) => {
      const buf = await readRunBuffer(ctx, run, report.damaged);
      if (buf === null) return;
      report.bytesRead += buf.length;
      for (const loc of run.items) {
        report.checkedChunks++;
        const f = checkRecord(buf, loc.offset - run.offset, loc, ctx.geometry) ?? checkLayerChecksums(buf, loc.offset - run.offset, loc, ctx.geometry);
        if (f !== null) report.damaged.push(f);
      }
    });
  }
  report.damaged.sort((a, b) => a.chunkId - b.chunkId);
  return report;
}

/** The V-NIAH results as markdown: accuracy, recall, latency and memory by mode and clip length. */
import type { VniahCell, VniahResults } from './vniahRunner.js';
import { type Method, meanOf, medianOf, methods, score, type Score, select, uniformChance } from './vniahSummary.js';

const pct = (x: number) => `${Math.round(x * 100)}%`;
const lengthHeader = (m: number) => `${m} min`;

function accuracyText(s: Score): string {
  if (s.accuracy === null) return s.skipped ? 'skipped' : '-';
  return `${pct(s.accuracy)} (${s.correct}/${s.total})`;
}

function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

function byLength(results: VniahResults, ms: Method[], cell: (m: Method, lengthMin: number) => string): string {
  const lengths = results.settings.lengthsMin;
  return table(['mode', 'storage', ...lengths.map(lengthHeader)], ms.map((m) => [m.mode, m.dtype, ...lengths.map((l) => cell(m, l))]));
}

export function vniahTable(results: VniahResults): string {
  const s = results.settings;
  const ms = methods(results);
  const lengths = s.lengthsMin;
  const out: string[] = [];
  out.push('# V-NIAH on probe clips');
  out.push('');
  out.push(
    `Clips of ${lengths.map(lengthHeader).join(', ')} at ${s.fps} fps; one ${s.needleSeconds}-s needle per depth (${s.depthsPct.map((d) => `${d}%`).join(', ')}); ` +
      `r = ${s.retrieve}, window ${s.windowFrames} frames, ${s.sinkFrames} sink frame(s); rekv on ${s.dtypes.join(', ')} storage, ` +
      `the other modes on ${s.baselineDtypes.join(', ')}; full only up to ${s.fullLimitTokens} context tokens. Recall is read at layer ${s.signalLayer}.`,
  );
  out.push('');
  out.push(`Command: \`${results.commandLine || '(library call)'}\``);
  const mi = results.machine;
  out.push(`Machine: ${mi.cpu}, ${mi.cores} cores, ${mi.memoryGiB} GiB, ${mi.platform} ${mi.release}, Node ${mi.node}, load average ${mi.loadAverage1m} at the start${mi.gitCommit ? `, commit ${mi.gitCommit.slice(0, 10)}${mi.gitDirty ? ' (with local changes)' : ''}` : ''}. Total ${results.totalSeconds.toFixed(0)} s.`);

  out.push('', '## Accuracy (needle questions, all depths)', '');
  out.push(byLength(results, ms, (m, l) => accuracyText(score(select(results, m, { kind: 'needle', lengthMin: l })))));
  if (ms.some((m) => m.mode === 'uniform')) {
    out.push('', `uniform by chance (r x needle frames / frames, capped at 1): ${lengths.map((l) => `${lengthHeader(l)} ${pct(uniformChance(results, l))}`).join(', ')}.`);
  }

  out.push('', "## Control question (a color in no frame; the right answer is 'unknown')", '');
  out.push(
    byLength(results, ms, (m, l) => {
      const c = select(results, m, { kind: 'control', lengthMin: l })[0];
      if (!c) return '-';
      if (c.correct === null) return 'skipped';
      return c.correct ? 'ok' : `WRONG ('${c.answer}')`;
    }),
  );

  out.push('', '## Accuracy by depth', '');
  for (const m of ms) {
    out.push(`**${m.label}**`, '');
    out.push(
      table(
        ['depth', ...lengths.map(lengthHeader)],
        s.depthsPct.map((d) => [
          `${d}%`,
          ...lengths.map((l) => {
            const cells = select(results, m, { kind: 'needle', lengthMin: l, depthPct: d });
            const sc = score(cells);
            if (sc.accuracy === null) return sc.skipped ? 'skip' : '-';
            return cells.map((c) => (c.correct ? 'ok' : `wrong ('${c.answer}')`)).join(', ');
          }),
        ]),
      ),
      '',
    );
  }

  out.push(`## Recall of the needle's chunks in the answer context (mean over depths; layer ${s.signalLayer} / union of layers)`, '');
  out.push(
    byLength(results, ms, (m, l) => {
      const cells = select(results, m, { kind: 'needle', lengthMin: l });
      const r = meanOf(cells, 'recall');
      const u = meanOf(cells, 'recallUnion');
      if (r === null) return 'skipped';
      return r === u ? pct(r) : `${pct(r)} / ${u === null ? '-' : pct(u)}`;
    }),
  );

  out.push(
    '',
    `## Time to first token, ms: median (best) over the needle questions; each question asked ${s.repeats} times, median per question, best of all asks`,
    '',
  );
  out.push(
    byLength(results, ms, (m, l) => {
      const cells = select(results, m, { kind: 'needle', lengthMin: l });
      const v = medianOf(cells, 'ttftMs');
      // The best ask is the least disturbed by other work on the machine.
      const runs = cells.flatMap((c) => c.ttftMsRuns);
      return v === null ? 'skipped' : `${v.toFixed(1)} (${Math.min(...runs).toFixed(1)})`;
    }),
  );
  const rekv = ms.filter((m) => m.mode === 'rekv');
  if (rekv.length) {
    out.push('', '## rekv time to first token by part, ms: retrieval (pass 1 + search) / load (chunks + assembly) / prefill; median, then the fastest ask', '');
    out.push(
      byLength(results, rekv, (m, l) => {
        const cells = select(results, m, { kind: 'needle', lengthMin: l });
        const part = (k: 'retrievalMs' | 'loadMs' | 'prefillMs') => medianOf(cells, k)?.toFixed(1) ?? '-';
        const fastest = cells.map((c) => c.best).filter((b) => b !== null && b !== undefined).reduce<VniahCell['best']>((x, y) => (x === null || y!.ttftMs < x.ttftMs ? y : x), null);
        const best = fastest ? `; ${fastest.retrievalMs.toFixed(1)} / ${fastest.loadMs.toFixed(1)} / ${fastest.prefillMs.toFixed(1)}` : '';
        return `${part('retrievalMs')} / ${part('loadMs')} / ${part('prefillMs')}${best}`;
      }),
    );
  }
  out.push('', '## Total answer time, ms (median) and context tokens (median)', '');
  out.push(
    byLength(results, ms, (m, l) => {
      const cells = select(results, m, { kind: 'needle', lengthMin: l });
      const t = medianOf(cells, 'totalMs');
      const k = medianOf(cells, 'contextTokens');
      return t === null ? 'skipped' : `${t.toFixed(1)} / ${k}`;
    }),
  );

  out.push('', '## Memory and ingest', '');
  out.push(
    table(
      ['length', 'storage', 'frames', 'clip s', 'ingest s', 'frames/s', 'stored MB', 'RSS after ingest MB', 'max RSS after a question MB'],
      results.ingests.map((i) => {
        const clip = results.clips.find((c) => c.lengthMin === i.lengthMin);
        const rss = results.cells.filter((c) => c.lengthMin === i.lengthMin && c.dtype === i.dtype && c.rssBytes !== null).map((c) => c.rssBytes!);
        return [
          lengthHeader(i.lengthMin),
          i.dtype,
          String(i.frames),
          clip ? `${clip.seconds.toFixed(1)}${clip.cached ? ' (cached)' : ''}` : '-',
          i.seconds.toFixed(1),
          (i.frames / i.seconds).toFixed(0),
          (i.storedBytes / 1e6).toFixed(1),
          (i.rssBytes / 1e6).toFixed(0),
          rss.length ? (Math.max(...rss) / 1e6).toFixed(0) : '-',
        ];
      }),
    ),
  );
  if (results.notes.length) out.push('', '## Notes', '', ...results.notes.map((n) => `- ${n}`));
  out.push('');
  return out.join('\n');
}

/** Writes a V-NIAH run's three outputs: results.json, table.md, heatmap.png. */
import fs from 'node:fs';
import path from 'node:path';
import { heatmapPng } from './vniahHeatmap.js';
import type { VniahResults } from './vniahRunner.js';
import { vniahTable } from './vniahTable.js';

export interface VniahOutputs {
  resultsJson: string;
  tableMd: string;
  heatmapPng: string;
}

export async function writeVniahOutputs(outDir: string, results: VniahResults): Promise<VniahOutputs> {
  fs.mkdirSync(outDir, { recursive: true });
  const files: VniahOutputs = {
    resultsJson: path.join(outDir, 'results.json'),
    tableMd: path.join(outDir, 'table.md'),
    heatmapPng: path.join(outDir, 'heatmap.png'),
  };
  fs.writeFileSync(files.resultsJson, `${JSON.stringify(results, null, 2)}\n`);
  fs.writeFileSync(files.tableMd, vniahTable(results));
  fs.writeFileSync(files.heatmapPng, await heatmapPng(results));
  return files;
}

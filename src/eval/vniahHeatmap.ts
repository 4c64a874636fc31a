/**
 * The V-NIAH heatmap: accuracy by needle depth (rows) x clip length (columns), one panel per method
 * (mode · storage dtype). A Vega spec rendered headless to SVG, then to PNG by sharp. The layout is
 * computed here (autosize none), so the image size is a pure function of the grid's shape.
 */
import path from 'node:path';
import sharp from 'sharp';
import * as vega from 'vega';
import type { VniahResults } from './vniahRunner.js';
import { methods, score, select } from './vniahSummary.js';

const CELL_W = 58;
const CELL_H = 24;
const AXIS_W = 40; // depth labels left of each panel
const PANEL_TITLE_H = 22;
const AXIS_H = 24; // length labels under each panel
const GAP_X = 22;
const GAP_Y = 14;
const MARGIN = 14;
const TITLE_H = 60;
const LEGEND_H = 34;
const MAX_COLUMNS = 4;
const MIN_PLOT_W = 150;
/** Pixels per SVG unit in the PNG: 2x keeps the labels sharp on high-density screens. */
export const HEATMAP_SCALE = 2;

interface Layout {
  columns: number;
  rows: number;
  plotW: number;
  plotH: number;
  blockW: number;
  blockH: number;
  width: number;
  height: number;
}

function layout(panels: number, lengths: number, depths: number): Layout {
  const columns = Math.max(1, Math.min(panels, MAX_COLUMNS));
  const rows = Math.max(1, Math.ceil(panels / columns));
  // Wide enough for a panel title like 'uniform · float32' even with one clip length.
  const plotW = Math.max(lengths * CELL_W, MIN_PLOT_W);
  const plotH = depths * CELL_H;
  const blockW = AXIS_W + plotW + GAP_X;
  const blockH = PANEL_TITLE_H + plotH + AXIS_H + GAP_Y;
  // Wide enough for the title and legend even with a single short panel.
  const width = Math.max(2 * MARGIN + columns * blockW - GAP_X, 600);
  const height = TITLE_H + rows * blockH - GAP_Y + LEGEND_H + MARGIN;
  return { columns, rows, plotW, plotH, blockW, blockH, width, height };
}

/** PNG size in pixels for a grid of `panels` methods, `lengths` clip lengths and `depths` depths. */
export function heatmapSize(panels: number, lengths: number, depths: number): { width: number; height: number } {
  const l = layout(panels, lengths, depths);
  return { width: l.width * HEATMAP_SCALE, height: l.height * HEATMAP_SCALE };
}

const GREEN = '#1a9850';
const RED = '#d73027';
const SKIPPED = '#d9d9d9';

export function heatmapSpec(results: VniahResults): vega.Spec {
  const s = results.settings;
  const ms = methods(results);
  const lengthLabels = s.lengthsMin.map((m) => `${m} min`);
  const depthLabels = s.depthsPct.map((d) => `${d}%`);
  const l = layout(ms.length, lengthLabels.length, depthLabels.length);
  const values = ms.flatMap((m, panel) =>
    s.lengthsMin.flatMap((lengthMin, li) =>
      s.depthsPct.map((depthPct, di) => {
        const sc = score(select(results, m, { kind: 'needle', lengthMin, depthPct }));
        return { panel, length: lengthLabels[li], depth: depthLabels[di], acc: sc.accuracy, text: sc.accuracy === null ? 'skip' : `${Math.round(sc.accuracy * 100)}%` };
      }),
    ),
  );
  const panelMarks: vega.Mark[] = ms.map((m, i) => ({
    type: 'group',
    encode: {
      enter: {
        x: { value: MARGIN + (i % l.columns) * l.blockW + AXIS_W },
        y: { value: TITLE_H + Math.floor(i / l.columns) * l.blockH + PANEL_TITLE_H },
        width: { value: l.plotW },
        height: { value: l.plotH },
        stroke: { value: '#888' },
      },
    },
    title: { text: m.label, anchor: 'start', fontSize: 13, fontWeight: 'bold', offset: 6 },
    data: [{ name: `panel${i}`, source: 'cells', transform: [{ type: 'filter', expr: `datum.panel === ${i}` }] }],
    scales: [
      // Explicit ranges: a nested group's 'width'/'height' range names would resolve to the whole view's.
      { name: 'x', type: 'band', domain: lengthLabels, range: [0, l.plotW], paddingInner: 0.06 },
      { name: 'y', type: 'band', domain: depthLabels, range: [0, l.plotH], paddingInner: 0.08 },
    ],
    axes: [
      { orient: 'bottom', scale: 'x', ticks: false, domain: false, labelFontSize: 11, labelPadding: 4 },
      { orient: 'left', scale: 'y', ticks: false, domain: false, labelFontSize: 11, labelPadding: 4 },
    ],
    marks: [
      {
        type: 'rect',
        from: { data: `panel${i}` },
        encode: {
          enter: {
            x: { scale: 'x', field: 'length' },
            width: { scale: 'x', band: 1 },
            y: { scale: 'y', field: 'depth' },
            height: { scale: 'y', band: 1 },
            fill: [{ test: 'datum.acc === null', value: SKIPPED }, { scale: 'color', field: 'acc' }],
          },
        },
      },
      {
        type: 'text',
        from: { data: `panel${i}` },
        encode: {
          enter: {
            x: { scale: 'x', field: 'length', band: 0.5 },
            y: { scale: 'y', field: 'depth', band: 0.5 },
            text: { field: 'text' },
            align: { value: 'center' },
            baseline: { value: 'middle' },
            fontSize: { value: 11 },
            fill: [{ test: 'datum.acc === null || (datum.acc > 0.3 && datum.acc < 0.7)', value: '#222' }, { value: 'white' }],
          },
        },
      },
    ],
  }));
  const legendY = l.height - MARGIN - LEGEND_H / 2;
  const legend = [
    { fill: GREEN, text: 'correct' },
    { fill: RED, text: 'wrong' },
    { fill: SKIPPED, text: `skipped (context > ${s.fullLimitTokens} tokens)` },
  ];
  const legendMarks: vega.Mark[] = legend.flatMap((item, i): vega.Mark[] => [
    { type: 'rect', encode: { enter: { x: { value: MARGIN + i * 120 }, y: { value: legendY - 7 }, width: { value: 14 }, height: { value: 14 }, fill: { value: item.fill } } } },
    { type: 'text', encode: { enter: { x: { value: MARGIN + i * 120 + 19 }, y: { value: legendY }, text: { value: item.text }, baseline: { value: 'middle' }, fontSize: { value: 11 }, fill: { value: '#222' } } } },
  ]);
  const titleMarks: vega.Mark[] = [
    { type: 'text', encode: { enter: { x: { value: MARGIN }, y: { value: 20 }, text: { value: 'V-NIAH accuracy: needle depth (rows) x clip length (columns)' }, fontSize: { value: 15 }, fontWeight: { value: 'bold' }, fill: { value: '#111' } } } },
    {
      type: 'text',
      encode: {
        enter: {
          x: { value: MARGIN },
          y: { value: 37 },
          text: { value: `${path.basename(results.model.dir)}, ${s.fps} fps, r = ${s.retrieve}, window ${s.windowFrames} + ${s.sinkFrames} sink frame(s), ${s.needleSeconds}-s needles` },
          fontSize: { value: 11 },
          fill: { value: '#444' },
        },
      },
    },
  ];
  const sinkNotes = results.notes.filter((n) => n.includes('covers sink frame'));
  if (sinkNotes.length) {
    const depths = sinkNotes.map((n) => /depth ([\d.]+%)/.exec(n)?.[1]).filter(Boolean);
    titleMarks.push({
      type: 'text',
      encode: { enter: { x: { value: MARGIN }, y: { value: 51 }, text: { value: `depth ${depths.join(', ')}: the needle starts on the sink frame, which every mode keeps in context` }, fontSize: { value: 11 }, fill: { value: '#444' } } },
    });
  }
  return {
    $schema: 'https://vega.github.io/schema/vega/v6.json',
    width: l.width,
    height: l.height,
    padding: 0,
    autosize: 'none',
    background: 'white',
    config: { text: { font: 'DejaVu Sans, Arial, sans-serif' }, axis: { labelFont: 'DejaVu Sans, Arial, sans-serif' }, title: { font: 'DejaVu Sans, Arial, sans-serif' } },
    data: [{ name: 'cells', values }],
    scales: [{ name: 'color', type: 'linear', domain: [0, 1], range: [RED, '#fee08b', GREEN] }],
    marks: [...titleMarks, ...panelMarks, ...legendMarks],
  };
}

export async function heatmapSvg(results: VniahResults): Promise<string> {
  const view = new vega.View(vega.parse(heatmapSpec(results)), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** The heatmap as PNG bytes (flat colors: a palette PNG stays small). */
export async function heatmapPng(results: VniahResults): Promise<Buffer> {
  const svg = await heatmapSvg(results);
  return sharp(Buffer.from(svg), { density: 72 * HEATMAP_SCALE }).png({ palette: true, compressionLevel: 9 }).toBuffer();
}

/**
 * Line charts for the benchmarks: panels stacked over one shared x axis, one line per series.
 * A Vega spec rendered headless to SVG, then to PNG by sharp (as the V-NIAH heatmap is).
 */
import fs from 'node:fs';
import sharp from 'sharp';
import * as vega from 'vega';

export interface Series {
  name: string;
  points: Array<[x: number, y: number]>;
}

export interface Panel {
  yLabel: string;
  series: Series[];
  /** 'log' for quantities spanning decades (e.g. a linear-growth baseline next to a flat one). */
  yScale?: 'linear' | 'log';
}

export interface LineChart {
  title: string;
  xLabel: string;
  panels: Panel[];
}

const WIDTH = 560;
const PANEL_H = 200;
const SCALE = 2;

function panelSpec(panel: Panel, title: string | undefined, xLabel: string): vega.Spec {
  const rows = panel.series.flatMap((series) => series.points.filter(([, y]) => Number.isFinite(y)).map(([x, y]) => ({ series: series.name, x, y })));
  const yScale = panel.yScale ?? 'linear';
  return {
    $schema: 'https://vega.github.io/schema/vega/v6.json',
    width: WIDTH,
    height: PANEL_H,
    padding: 16,
    background: 'white',
    ...(title ? { title: { text: title, anchor: 'start' as const, fontSize: 14 } } : {}),
    data: [{ name: 'rows', values: rows }],
    scales: [
      { name: 'x', type: 'linear', domain: { data: 'rows', field: 'x' }, range: 'width', nice: true, zero: true },
      yScale === 'log'
        ? { name: 'y', type: 'log', domain: { data: 'rows', field: 'y' }, range: 'height', nice: true }
        : { name: 'y', type: 'linear', domain: { data: 'rows', field: 'y' }, range: 'height', nice: true, zero: true },
      { name: 'color', type: 'ordinal', domain: panel.series.map((s) => s.name), range: 'category' },
    ],
    axes: [
      { orient: 'bottom', scale: 'x', title: xLabel, grid: true, gridOpacity: 0.3 },
      { orient: 'left', scale: 'y', title: panel.yLabel, grid: true, gridOpacity: 0.3 },
    ],
    legends: [{ fill: 'color', orient: 'right' }],
    marks: [
      {
        type: 'group',
        from: { facet: { name: 'line', data: 'rows', groupby: 'series' } },
        marks: [
          {
            type: 'line',
            from: { data: 'line' },
            sort: { field: 'datum.x' },
            encode: { enter: { x: { scale: 'x', field: 'x' }, y: { scale: 'y', field: 'y' }, stroke: { scale: 'color', field: 'series' }, strokeWidth: { value: 2 } } },
          },
          {
            type: 'symbol',
            from: { data: 'line' },
            encode: { enter: { x: { scale: 'x', field: 'x' }, y: { scale: 'y', field: 'y' }, fill: { scale: 'color', field: 'series' }, size: { value: 30 } } },
          },
        ],
      },
    ],
  };
}

async function panelPng(spec: vega.Spec): Promise<Buffer> {
  const view = new vega.View(vega.parse(spec), { renderer: 'none' });
  try {
    return await sharp(Buffer.from(await view.toSVG()), { density: 72 * SCALE }).png().toBuffer();
  } finally {
    view.finalize();
  }
}

/** Renders the chart to a PNG file: the panels' images stacked top to bottom. */
export async function writeLineChartPng(chart: LineChart, file: string): Promise<void> {
  const images = await Promise.all(chart.panels.map((panel, i) => panelPng(panelSpec(panel, i === 0 ? chart.title : undefined, chart.xLabel))));
  const sizes = await Promise.all(images.map((image) => sharp(image).metadata()));
  const width = Math.max(...sizes.map((m) => m.width ?? 0));
  const height = sizes.reduce((sum, m) => sum + (m.height ?? 0), 0);
  let top = 0;
  const layers = images.map((input, i) => {
    const layer = { input, left: 0, top };
    top += sizes[i]!.height ?? 0;
    return layer;
  });
  const png = await sharp({ create: { width, height, channels: 3, background: 'white' } }).composite(layers).png({ compressionLevel: 9 }).toBuffer();
  fs.writeFileSync(file, png);
}

// The charts of a run report, as Vega-Lite specs, and their offline rendering: Vega-Lite →
// Vega → a headless View → SVG → PNG (sharp). No canvas, no network: every spec carries its
// data inline. Each chart is a standalone image with its own title, so a PNG can be embedded
// anywhere. Stages keep one colour across all charts (their order of first appearance picks
// it); seeds are told apart by dash pattern or point shape. A chart with nothing to plot is
// left out (chartSpecs omits it), never drawn empty. Vega and Vega-Lite load on first use.
import type { TopLevelSpec } from 'vega-lite';

import { criticalEntropy, metric, type MetricRecord, type ReportData } from './data.js';
import { correlation, stageStats } from './stats.js';
import { R1VError } from '../../core/errors.js';

/** One chart: its PNG's file name (in the report directory), its title and its spec. */
export interface ChartSpec {
  name: string;
  title: string;
  spec: TopLevelSpec;
}

/** A rendered chart: the PNG's path and its display size in CSS pixels (the PNG has twice as many). */
export interface RenderedChart {
  file: string;
  width: number;
  height: number;
}

const PALETTE = ['#4c78a8', '#f58518', '#54a24b', '#e45756', '#72b7b2', '#b279a2', '#eeca3b', '#9d755d', '#ff9da6', '#79706e'];
const PANEL = { width: 460, height: 230 };
const CONFIG = {
  background: 'white', padding: 12,
  title: { fontSize: 15, subtitleFontSize: 12, subtitleColor: '#555', anchor: 'start' as const, offset: 10 },
  axis: { labelFontSize: 11, titleFontSize: 12, labelLimit: 160 },
  legend: { labelFontSize: 11, titleFontSize: 12, labelLimit: 200, symbolOpacity: 1 },
  header: { labelFontSize: 13, labelFontWeight: 'bold' as const },
};

/** Every stage in order of first appearance (steps, evaluations, checkpoints; first run first). */
function stageOrder(data: ReportData): string[] {
  const stages = new Set<string>();
  for (const run of data.runs) {
    for (const r of [...run.steps, ...run.evaluations, ...run.checkpoints]) stages.add(String(r.stage));
  }
  return [...stages];
}

/** A colour encoding of `stage` over the stages present, each with its report-wide colour. */
function stageColor(all: readonly string[], present: ReadonlySet<string>) {
  const domain = all.filter((s) => present.has(s));
  const range = domain.map((s) => PALETTE[all.indexOf(s) % PALETTE.length]!);
  return { field: 'stage', type: 'nominal' as const, title: 'stage', scale: { domain, range }, sort: domain };
}

interface Panel {
  /** The step-record metric drawn as lines. */
  key: string;
  label: string;
  /** A checkpoint metric drawn as points in the same panel. */
  checkpointKey?: string;
}

/** Points of the step charts: one row per (record, panel) with a finite value. */
function stepRows(data: ReportData, panels: readonly Panel[]): Array<Record<string, number | string>> {
  const rows: Array<Record<string, number | string>> = [];
  const add = (records: readonly MetricRecord[], key: string, seed: number, panel: string, source: 'train' | 'held-out') => {
    for (const r of records) {
      const value = key === 'critical_entropy' ? criticalEntropy(r) : metric(r, key);
      const step = metric(r, 'step');
      if (value !== undefined && step !== undefined) rows.push({ step, value, stage: String(r.stage), seed: `seed ${seed}`, panel, source });
    }
  };
  for (const run of data.runs) {
    for (const p of panels) {
      add(run.steps, p.key, run.seed, p.label, 'train');
      if (p.checkpointKey) add(run.checkpoints, p.checkpointKey, run.seed, p.label, 'held-out');
    }
  }
  return rows;
}

interface StepChart {
  name: string;
  title: string;
  subtitle: string;
  panels: Panel[];
  /** The y axis' d3 number format (e.g. '.0%'). */
  yFormat?: string;
}

/** Per-step metrics in side-by-side panels: lines per (stage, seed), checkpoint values as diamonds. */
function stepChart(data: ReportData, stages: string[], { name, title, subtitle, panels, yFormat }: StepChart): ChartSpec | undefined {
  const rows = stepRows(data, panels);
  if (rows.length === 0) return undefined;
  const perLine = new Map<string, number>();
  for (const r of rows) {
    const line = [r.panel, r.stage, r.seed, r.source].join('|');
    perLine.set(line, (perLine.get(line) ?? 0) + 1);
  }
  const train = { filter: "datum.source === 'train'" };
  const x = { field: 'step', type: 'quantitative' as const, title: 'step', axis: { tickMinStep: 1 } };
  const y = { field: 'value', type: 'quantitative' as const, title: null, scale: { zero: false }, ...(yFormat ? { axis: { format: yFormat } } : {}) };
  const color = stageColor(stages, new Set(rows.map((r) => String(r.stage))));
  const spec: TopLevelSpec = {
    title: { text: title, subtitle },
    data: { values: rows },
    facet: { column: { field: 'panel', type: 'nominal', title: null, sort: panels.map((p) => p.label) } },
    spec: {
      // Two panels side by side fit the page's width.
      width: panels.length > 1 ? 380 : PANEL.width, height: PANEL.height,
      layer: [
        {
          transform: [train], mark: { type: 'line', strokeWidth: 1.6 },
          encoding: { x, y, color, strokeDash: { field: 'seed', type: 'nominal', title: 'seed', legend: { symbolStrokeWidth: 2 } } },
        },
        // Dots on the lines while they are short enough for dots to show single steps.
        ...(Math.max(...perLine.values()) <= 60 ? [{ transform: [train], mark: { type: 'point' as const, filled: true, size: 12 }, encoding: { x, y, color } }] : []),
        {
          transform: [{ filter: "datum.source === 'held-out'" }],
          mark: { type: 'point', shape: 'diamond', filled: true, size: 70, stroke: 'black', strokeWidth: 0.6 },
          encoding: { x, y, color },
        },
      ],
    },
    resolve: { scale: { y: 'independent' } },
    config: CONFIG,
  };
  return { name, title, spec };
}

/** Held-out accuracy per stage over seeds: bars at the mean, error bars at ± one sample std, a dot per seed. */
function stageChart(data: ReportData, stages: string[]): ChartSpec | undefined {
  const table = stageStats(data.runs, 'accuracy');
  if (table.length === 0) return undefined;
  const bars = table.map((t) => ({
    stage: t.stage, mean: 100 * t.mean,
    ...(Number.isFinite(t.std) ? { lo: 100 * (t.mean - t.std), hi: 100 * (t.mean + t.std) } : {}),
  }));
  const seeds = table.flatMap((t) => t.values.map((v, i) => ({ stage: t.stage, seed: `seed ${t.seeds[i]}`, value: 100 * v })));
  const order = table.map((t) => t.stage);
  const x = { field: 'stage', type: 'nominal' as const, title: null, sort: order, axis: { labelAngle: -20, labelLimit: 180 } };
  const color = { ...stageColor(stages, new Set(order)), legend: null };
  // One y axis for the three layers (same title: Vega-Lite merges them), 0–100 unless a whisker reaches higher.
  const top = Math.max(100, ...bars.map((b) => b.hi ?? 0));
  const y = (field: string) => ({ field, type: 'quantitative' as const, title: 'accuracy (%)', scale: { domain: [0, top] } });
  const title = 'Held-out accuracy per stage';
  const spec: TopLevelSpec = {
    title: { text: title, subtitle: data.runs.length > 1 ? `bars: mean over ${data.runs.length} seeds; whiskers: ± sample std; circles: each seed` : `seed ${data.runs[0]!.seed}` },
    width: Math.max(PANEL.width, 90 * order.length), height: 280,
    layer: [
      { data: { values: bars }, mark: { type: 'bar', opacity: 0.85 }, encoding: { x, y: y('mean'), color } },
      { data: { values: seeds }, mark: { type: 'point', size: 36, color: '#222', strokeWidth: 1.4 }, encoding: { x, y: y('value') } },
      {
        data: { values: bars.filter((b) => b.lo !== undefined) }, mark: { type: 'errorbar', ticks: { size: 14 }, thickness: 1.8, color: '#222' },
        encoding: { x, y: y('lo'), y2: { field: 'hi' } },
      },
    ],
    config: CONFIG,
  };
  return { name: 'report-stages.png', title, spec };
}

/** Checkpoints with both a critical-token entropy and a validation accuracy. */
function checkpointPairs(data: ReportData): Array<{ seed: number; stage: string; step: number; entropy: number; accuracy: number }> {
  return data.runs.flatMap((run) => run.checkpoints.flatMap((c) => {
    const entropy = criticalEntropy(c);
    const accuracy = metric(c, 'val_accuracy');
    return entropy === undefined || accuracy === undefined ? [] : [{ seed: run.seed, stage: String(c.stage), step: Number(c.step), entropy, accuracy }];
  }));
}

/** Pearson's r as text: "r = −0.630 (n = 14)", or why it is undefined. */
function describeCorrelation(r: number, n: number): string {
  if (Number.isNaN(r)) return `r undefined (n = ${n}: ${n < 2 ? 'fewer than 2 checkpoints' : 'a constant series'})`;
  return `r = ${r.toFixed(3).replace('-', '−')} (n = ${n})`;
}

/** Pearson's r of critical-token entropy with validation accuracy over the checkpoints, and its wording. */
export function entropyAccuracyCorrelation(data: ReportData): { r: number; n: number; text: string } {
  const pairs = checkpointPairs(data);
  const r = correlation(pairs.map((p) => p.entropy), pairs.map((p) => p.accuracy));
  return { r, n: pairs.length, text: describeCorrelation(r, pairs.length) };
}

/** Critical-token entropy against validation accuracy per checkpoint, with Pearson's r and a fitted line. */
function scatterChart(data: ReportData, stages: string[]): ChartSpec | undefined {
  const pairs = checkpointPairs(data);
  if (pairs.length === 0) return undefined;
  const { r, text } = entropyAccuracyCorrelation(data);
  const rows = pairs.map((p) => ({ ...p, seed: `seed ${p.seed}` }));
  const x = { field: 'entropy', type: 'quantitative' as const, title: 'critical-token entropy (nats)', scale: { zero: false } };
  const y = { field: 'accuracy', type: 'quantitative' as const, title: 'validation accuracy', scale: { zero: false }, axis: { format: '.0%' } };
  const title = `Critical-token entropy vs validation accuracy: Pearson ${text}`;
  const spec: TopLevelSpec = {
    title: { text: title, subtitle: 'one point per checkpoint; line: least-squares fit' },
    data: { values: rows }, ...PANEL, height: 280,
    layer: [
      {
        mark: { type: 'point', filled: true, size: 60, opacity: 0.85 },
        encoding: { x, y, color: stageColor(stages, new Set(pairs.map((p) => p.stage))), shape: { field: 'seed', type: 'nominal', title: 'seed' } },
      },
      ...(Number.isNaN(r) ? [] : [{
        transform: [{ regression: 'accuracy', on: 'entropy' }],
        mark: { type: 'line' as const, color: '#444', strokeDash: [5, 3], strokeWidth: 1.4 },
        encoding: { x, y },
      }]),
    ],
    config: CONFIG,
  };
  return { name: 'report-critical-entropy.png', title, spec };
}

/** The report's charts that have data, in display order. */
export function chartSpecs(data: ReportData): ChartSpec[] {
  const stages = stageOrder(data);
  return [
    stepChart(data, stages, {
      name: 'report-loss.png', title: 'Loss per step (SFT stages)', subtitle: 'training loss of each batch; one line per stage and seed',
      panels: [{ key: 'loss', label: 'loss' }],
    }),
    stepChart(data, stages, {
      name: 'report-reward.png', title: 'Reward per step (RL stages)', subtitle: 'mean reward of each rollout batch; one line per stage and seed',
      panels: [{ key: 'reward_mean', label: 'reward mean' }],
    }),
    stepChart(data, stages, {
      name: 'report-accuracy.png', title: 'Accuracy and format rate per step', subtitle: 'lines: training batches; diamonds: held-out set at checkpoints',
      panels: [{ key: 'accuracy', label: 'accuracy', checkpointKey: 'val_accuracy' }, { key: 'format_rate', label: 'format rate', checkpointKey: 'val_format' }],
      yFormat: '.0%',
    }),
    stepChart(data, stages, {
      name: 'report-entropy.png', title: 'Entropy per step', subtitle: 'mean token entropy of the responses, and of the critical tokens (nats)',
      panels: [{ key: 'entropy', label: 'entropy' }, { key: 'critical_entropy', label: 'critical-token entropy', checkpointKey: 'critical_entropy' }],
    }),
    stageChart(data, stages),
    scatterChart(data, stages),
  ].filter((c): c is ChartSpec => c !== undefined);
}

/** Renders a spec to a PNG at twice its size; returns its display size. */
export async function renderChart(spec: TopLevelSpec, file: string): Promise<RenderedChart> {
  const [vega, { compile }, { default: sharp }] = await Promise.all([import('vega'), import('vega-lite'), import('sharp')]);
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    const svg = await view.toSVG(2);
    const info = await sharp(Buffer.from(svg)).png().toFile(file);
    return { file, width: Math.round(info.width / 2), height: Math.round(info.height / 2) };
  } catch (error) {
    throw new R1VError('IO', `writeReport: rendering ${file}: ${(error as Error).message}`, { cause: error });
  } finally {
    view.finalize();
  }
}

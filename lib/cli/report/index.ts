// The run report: writeReport(dir, data) renders the charts of a training run (one or more
// seeds) to PNG files in dir and writes dir/report.html beside them — a self-contained page
// that references the PNGs by relative path. Rendering is offline (Vega-Lite → Vega → SVG →
// PNG with sharp). Bad data is R1VError('ARGUMENT'); a file that cannot be written, R1VError('IO').
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

import { chartSpecs, entropyAccuracyCorrelation, renderChart } from './charts.js';
import { checkReportData, type ReportData } from './data.js';
import { reportHtml } from './html.js';
import { stageStats } from './stats.js';
import { R1VError } from '../../core/errors.js';
import * as is from '../../core/validate.js';

export { correlation, stageTable, type StageRow } from './stats.js';
export { chartSpecs, type ChartSpec } from './charts.js';
export type { ReportData, ReportRun, StageEvaluation, MetricRecord } from './data.js';

/** The name of the page writeReport writes. */
export const REPORT_FILE = 'report.html';

async function io<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if (error instanceof R1VError) throw error;
    throw new R1VError('IO', `writeReport: ${what}: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * Writes dir/report.html and its charts (dir/report-*.png; the directory is created if
 * needed). Returns the page's path and the images' paths, in display order; a chart with no
 * data (no RL steps, no checkpoints) is not written.
 */
export async function writeReport(dir: string, data: ReportData): Promise<{ html: string; images: string[] }> {
  const where = 'writeReport';
  if (is.string(dir, 'dir', where) === '') is.fail(where, 'dir must not be empty');
  checkReportData(data, where);
  await io(`creating ${dir}`, () => fsp.mkdir(dir, { recursive: true }));
  const charts = [];
  for (const c of chartSpecs(data)) charts.push({ ...(await renderChart(c.spec, path.join(dir, c.name))), title: c.title });
  const html = reportHtml({
    data, dir, charts,
    accuracy: stageStats(data.runs, 'accuracy'),
    formatRate: stageStats(data.runs, 'format_rate'),
    meanLength: stageStats(data.runs, 'mean_length'),
    criticalEntropy: stageStats(data.runs, 'critical_entropy'),
    correlation: entropyAccuracyCorrelation(data).text,
  });
  const file = path.join(dir, REPORT_FILE);
  await io(`writing ${file}`, () => fsp.writeFile(file, html));
  return { html: file, images: charts.map((c) => c.file) };
}

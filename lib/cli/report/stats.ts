// The numbers of a run report: per-stage held-out results over seeds (mean and sample standard
// deviation) and the Pearson correlation. Statistics that are undefined are NaN: the standard
// deviation of a single value, the correlation of fewer than two points or of a constant series.
import { checkRuns, type ReportRun, type StageEvaluation } from './data.js';
import * as is from '../../core/validate.js';

export interface StageRow {
  stage: string;
  /** Mean over the seeds that evaluated the stage. */
  mean: number;
  /** Sample standard deviation (n − 1); NaN for a single seed. */
  std: number;
  /** How many seeds evaluated the stage. */
  n: number;
  /** The per-seed values, in the order of the runs that evaluated the stage. */
  values: number[];
  /** Those runs' seeds, aligned with values. */
  seeds: number[];
}

/** A numeric field of a stage evaluation. */
export type EvaluationMetric = Exclude<keyof StageEvaluation, 'stage'>;

/** Arithmetic mean (NaN for no values). */
export function mean(values: readonly number[]): number {
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : NaN;
}

/** Sample standard deviation (n − 1); NaN for fewer than two values. */
export function sampleStd(values: readonly number[]): number {
  if (values.length < 2) return NaN;
  const m = mean(values);
  return Math.sqrt(values.reduce((a, b) => a + (b - m) ** 2, 0) / (values.length - 1));
}

/**
 * One metric of the held-out evaluations per stage over seeds; stages in order of first
 * appearance. An evaluation without critical tokens has no critical-token entropy: it is left
 * out of that metric's statistics (and a stage without any, out of its rows).
 */
export function stageStats(runs: readonly ReportRun[], key: EvaluationMetric): StageRow[] {
  const byStage = new Map<string, { values: number[]; seeds: number[] }>();
  for (const run of runs) {
    for (const e of run.evaluations) {
      if (key === 'critical_entropy' && e.critical_count === 0) continue;
      const entry = byStage.get(e.stage) ?? { values: [], seeds: [] };
      entry.values.push(e[key]);
      entry.seeds.push(run.seed);
      byStage.set(e.stage, entry);
    }
  }
  return [...byStage].map(([stage, { values, seeds }]) => ({
    stage, mean: mean(values), std: sampleStd(values), n: values.length, values, seeds,
  }));
}

/**
 * Held-out accuracy per stage over seeds: mean ± sample standard deviation, the number of
 * seeds and their values. Stages come in the order they first appear in the runs' evaluations.
 */
export function stageTable(runs: ReportRun[]): StageRow[] {
  return stageStats(checkRuns(runs, 'runs', 'stageTable'), 'accuracy');
}

/** Pearson's r of paired values; NaN with fewer than two pairs or when either series is constant. */
export function correlation(xs: number[], ys: number[]): number {
  const x = Array.from(is.finiteNumbers(xs, 'xs', 'correlation'));
  const y = Array.from(is.finiteNumbers(ys, 'ys', 'correlation', x.length));
  if (x.length < 2 || x.every((a) => a === x[0]) || y.every((a) => a === y[0])) return NaN;
  // Each series divided by its largest magnitude before centring: no overflow or underflow for any finite input.
  const centred = (v: number[]) => {
    const scale = v.reduce((m, a) => Math.max(m, Math.abs(a)), 0);
    const m = mean(v.map((a) => a / scale));
    return v.map((a) => a / scale - m);
  };
  const dx = centred(x);
  const dy = centred(y);
  let sxy = 0, sxx = 0, syy = 0;
  for (let i = 0; i < dx.length; i++) {
    sxy += dx[i]! * dy[i]!;
    sxx += dx[i]! ** 2;
    syy += dy[i]! ** 2;
  }
  return Math.max(-1, Math.min(1, sxy / Math.sqrt(sxx * syy)));
}

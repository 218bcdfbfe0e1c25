// What a run report is made of, and the checks of it. A report covers one training recipe run
// over one or more seeds: each seed's per-step metrics (the lines of metrics.jsonl), its
// held-out evaluation after each stage, and its checkpoints' validation metrics. Step and
// checkpoint records are open-ended (any metric names); only their `step` and `stage` are
// required, and a metric that is absent, undefined, null (JSON's NaN) or non-finite is "not
// measured" and left out of every chart. Bad input is R1VError('ARGUMENT') naming the path of
// the bad field.
import * as is from '../../core/validate.js';

/** One metrics record (a metrics.jsonl line, a checkpoint's metrics): step and stage, then metrics. */
export type MetricRecord = Record<string, number | string | null>;

/** The held-out evaluation of one stage's final model. */
export interface StageEvaluation {
  stage: string;
  /** Fraction of correct answers, in [0, 1]. */
  accuracy: number;
  /** Fraction of well-formatted answers, in [0, 1]. */
  format_rate: number;
  /** Mean response length in tokens. */
  mean_length: number;
  /** Mean entropy of the critical (reasoning-pivot) tokens. */
  critical_entropy: number;
  /** How many critical tokens the evaluation produced. */
  critical_count: number;
}

/** One seed's run. */
export interface ReportRun {
  seed: number;
  /** Per step metrics, as in metrics.jsonl: { step, stage, stageStep, kind, loss, reward_mean, accuracy, format_rate, entropy, critical_entropy, ... }. */
  steps: MetricRecord[];
  /** Held-out evaluation after each stage (and the control), one per stage. */
  evaluations: StageEvaluation[];
  /** Checkpoints with their validation metrics: { step, stage, val_accuracy, critical_entropy, critical_count, ... }. */
  checkpoints: MetricRecord[];
}

export interface ReportData {
  title: string;
  /** The command line that produced the runs. */
  command: string;
  /** When the run started (ISO 8601 or any readable date). */
  startedAt: string;
  durationSeconds: number;
  /** The device, e.g. 'cpu (AMD EPYC, 2 threads)'. */
  device: string;
  /** The build, e.g. 'r1v 0.1.0, CUDA build: yes'. */
  build: string;
  /** The resolved configuration, shown collapsed as JSON. */
  config: unknown;
  runs: ReportRun[];
  /** Short findings, one line each. */
  notes?: string[];
}

const DATA_FIELDS = ['title', 'command', 'startedAt', 'durationSeconds', 'device', 'build', 'config', 'runs', 'notes'] as const;
const RUN_FIELDS = ['seed', 'steps', 'evaluations', 'checkpoints'] as const;
const EVALUATION_FIELDS = ['stage', 'accuracy', 'format_rate', 'mean_length', 'critical_entropy', 'critical_count'] as const;

function array(value: unknown, name: string, where: string): unknown[] {
  if (!Array.isArray(value)) is.fail(where, `${name} must be an array, got ${is.show(value)}`);
  return value;
}

function checkRecord(value: unknown, name: string, where: string): void {
  if (!is.isObject(value)) is.fail(where, `${name} must be an object, got ${is.show(value)}`);
  is.number(value.step, `${name}.step`, where);
  is.string(value.stage, `${name}.stage`, where);
  for (const [key, v] of Object.entries(value)) {
    if (v !== null && v !== undefined && typeof v !== 'number' && typeof v !== 'string') is.fail(where, `${name}.${key} must be a number or a string, got ${is.show(v)}`);
  }
}

function checkEvaluation(value: unknown, name: string, where: string): string {
  const e = is.options(value, EVALUATION_FIELDS, where, 'field');
  for (const key of EVALUATION_FIELDS) if (e[key] === undefined) is.fail(where, `${name}.${key} is missing`);
  is.number(e.accuracy, `${name}.accuracy`, where, { min: 0, max: 1 });
  is.number(e.format_rate, `${name}.format_rate`, where, { min: 0, max: 1 });
  is.number(e.mean_length, `${name}.mean_length`, where, { min: 0 });
  is.number(e.critical_entropy, `${name}.critical_entropy`, where, { min: 0 });
  is.number(e.critical_count, `${name}.critical_count`, where, { integer: true, min: 0 });
  return is.string(e.stage, `${name}.stage`, where);
}

/** Checks runs (seeds distinct, one evaluation per stage and run); returns them typed. */
export function checkRuns(value: unknown, name: string, where: string): ReportRun[] {
  const runs = array(value, name, where);
  const seeds = new Set<number>();
  runs.forEach((run, r) => {
    const at = `${name}[${r}]`;
    const o = is.options(run, RUN_FIELDS, where, 'field');
    const seed = is.seed(o.seed, `${at}.seed`, where);
    if (seeds.has(seed)) is.fail(where, `${at}.seed ${seed} repeats an earlier run's seed`);
    seeds.add(seed);
    array(o.steps, `${at}.steps`, where).forEach((s, i) => checkRecord(s, `${at}.steps[${i}]`, where));
    array(o.checkpoints, `${at}.checkpoints`, where).forEach((c, i) => checkRecord(c, `${at}.checkpoints[${i}]`, where));
    const stages = new Set<string>();
    array(o.evaluations, `${at}.evaluations`, where).forEach((e, i) => {
      const stage = checkEvaluation(e, `${at}.evaluations[${i}]`, where);
      if (stages.has(stage)) is.fail(where, `${at}.evaluations[${i}].stage '${stage}' is evaluated twice in this run`);
      stages.add(stage);
    });
  });
  return runs as ReportRun[];
}

/** Checks a whole report's data; returns it typed. */
export function checkReportData(value: unknown, where: string): ReportData {
  const d = is.options(value, DATA_FIELDS, where, 'field');
  for (const key of ['title', 'command', 'startedAt', 'device', 'build'] as const) is.string(d[key], `data.${key}`, where);
  is.number(d.durationSeconds, 'data.durationSeconds', where, { min: 0 });
  checkRuns(d.runs, 'data.runs', where);
  if (d.notes !== undefined) array(d.notes, 'data.notes', where).forEach((n, i) => is.string(n, `data.notes[${i}]`, where));
  return value as ReportData;
}

/** record[key] when it is a finite number, else undefined (not measured). */
export function metric(record: MetricRecord, key: string): number | undefined {
  const v = record[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/**
 * A record's critical-token entropy, undefined when not measured — including when the record
 * counts zero critical tokens (the trainer then writes 0, which is no measurement).
 */
export function criticalEntropy(record: MetricRecord): number | undefined {
  const count = metric(record, 'critical_count');
  return count !== undefined && count <= 0 ? undefined : metric(record, 'critical_entropy');
}

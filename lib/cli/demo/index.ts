// `r1v demo`: the whole R1V3 recipe on visual arithmetic over real MNIST digits, on the
// embedded defaults, from a fresh clone: for each seed the pipeline (pipeline.ts), then a report
// (report.html with PNG charts) in the run directory: the held-out accuracy after every stage
// with its spread over seeds, GRPO against the cold-start model and against the SFT-continued
// control, and the critical-token entropy of each checkpoint next to its validation accuracy.
import { promises as fsp } from 'node:fs';
import path from 'node:path';

import { buildInfo, devices } from '../../core/device.js';
import { Engine } from '../../core/engine.js';
import { noProgress, type Progress } from '../../train/progress.js';
import { correlation, stageTable, writeReport, type ReportRun } from '../report/index.js';
import { demoConfigs, demoModelConfig, demoTokenizer } from './configs.js';
import { PRESETS, runPipeline, type DemoPreset } from './pipeline.js';

export interface DemoOptions {
  /** 'auto' (default), 'cpu' or 'cuda:N'. A CUDA device runs the larger 'cuda' preset. */
  device?: string;
  /** The smaller preset (a few minutes on two CPU cores). */
  quick?: boolean;
  /** Seeds to run (1, 2, …); the report shows mean and spread. Default 1. */
  seeds?: number;
  /** The run directory (default runs/<date-time>). */
  out?: string;
  progress?: Progress;
  signal?: AbortSignal;
  /** The command line, recorded in the report. */
  command?: string;
  /** Sizes other than the built-in presets' (for experiments and tests). */
  preset?: DemoPreset;
}

export interface DemoResult {
  outDir: string;
  reportPath: string;
  /** Held-out accuracy per stage over the seeds. */
  table: ReturnType<typeof stageTable>;
  /** Pearson r of critical-token entropy and validation accuracy over the checkpoints whose answers held critical tokens. */
  entropyAccuracyCorrelation: number;
  notes: string[];
  stopped: boolean;
}

function timestamp(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

/** Findings in words: GRPO against the cold start and the control, connector-only tuning, the correlation. */
export function findings(table: ReturnType<typeof stageTable>, r: number): string[] {
  const mean = (stage: string) => table.find((row) => row.stage === stage)?.mean;
  const points = (a: number, b: number) => `${(100 * (a - b)).toFixed(1)} points`;
  const notes: string[] = [];
  const cold = mean('3-coldstart'), grpo = mean('4-grpo'), connector = mean('5-connector'), control = mean('control-sft');
  if (cold !== undefined && grpo !== undefined) {
    notes.push(grpo >= cold + 0.05 ? `GRPO beats the cold-start model by ${points(grpo, cold)}.`
      : `GRPO does not beat the cold-start model by 5 points (${points(grpo, cold)}).`);
  }
  if (control !== undefined && grpo !== undefined) {
    notes.push(grpo > control ? `GRPO beats the SFT-continued control (same number of samples) by ${points(grpo, control)}.`
      : `The SFT-continued control matches or beats GRPO (${points(control, grpo)}).`);
  }
  if (connector !== undefined && grpo !== undefined) {
    notes.push(connector > grpo ? `Connector-only tuning after GRPO adds ${points(connector, grpo)}.`
      : `Connector-only tuning after GRPO does not help here (${points(connector, grpo)}).`);
  }
  notes.push(Number.isFinite(r)
    ? `Critical-token entropy against validation accuracy over the checkpoints: Pearson r = ${r.toFixed(2)}.`
    : 'Too few checkpoints with critical tokens for a correlation.');
  return notes;
}

export async function runDemo(options: DemoOptions = {}): Promise<DemoResult> {
  const progress = options.progress ?? noProgress;
  const started = new Date();
  const outDir = path.resolve(options.out ?? path.join('runs', timestamp(started)));
  await fsp.mkdir(outDir, { recursive: true });
  const engine = Engine.create({ device: (options.device ?? 'auto') as 'auto', seed: 1 });
  try {
    const preset = options.preset ?? (options.quick ? PRESETS.quick : engine.device.kind === 'cuda' ? PRESETS.cuda : PRESETS.full);
    const info = buildInfo();
    const device = engine.device.kind === 'cpu' ? `cpu (${engine.device.name}, ${engine.device.threads} threads)` : `${engine.device.id} (${engine.device.name})`;
    const build = `r1v ${info.version}; CUDA build: ${info.cuda ? `yes (${info.cudaArchitectures})` : 'no'}; CPU ISA: ${info.cpuIsa}`;
    progress.log(`r1v demo: the R1V3 recipe on visual arithmetic over MNIST (preset '${preset.name}') on ${device}; ${devices().length} device(s); run directory ${outDir}`);
    const tokenizer = await demoTokenizer(path.join(outDir, 'tokenizer'));
    const configs = await demoConfigs(preset, engine.device.id);
    const modelConfig = await demoModelConfig(tokenizer);
    await fsp.writeFile(path.join(outDir, 'demo-config.json'), `${JSON.stringify({ preset, modelConfig, stages: configs }, null, 2)}\n`);
    const runs: ReportRun[] = [];
    let stopped = false;
    for (let seed = 1; seed <= (options.seeds ?? 1) && !stopped; seed++) {
      const r = await runPipeline({ engine, tokenizer, modelConfig, configs, preset, seed, outDir, progress, signal: options.signal });
      runs.push({ seed, steps: r.steps, evaluations: r.evaluations, checkpoints: r.checkpoints });
      stopped = r.stopped;
    }
    const table = stageTable(runs);
    // Every checkpoint whose validation answers held critical tokens (a checkpoint without any has no such entropy).
    const points = runs.flatMap((run) => run.checkpoints.filter((c) => Number(c.critical_count) > 0));
    const r = correlation(points.map((c) => Number(c.critical_entropy)), points.map((c) => Number(c.val_accuracy)));
    const notes = findings(table, r);
    const report = await writeReport(outDir, {
      title: 'r1v demo: the R1V3 recipe on visual arithmetic over MNIST', command: options.command ?? 'r1v demo',
      startedAt: started.toISOString(), durationSeconds: (Date.now() - started.getTime()) / 1000, device, build,
      config: { preset, modelConfig, stages: configs }, runs, notes: stopped ? ['Stopped before the end (Ctrl-C): partial results.', ...notes] : notes,
    });
    for (const line of notes) progress.log(line);
    return { outDir, reportPath: report.html, table, entropyAccuracyCorrelation: r, notes, stopped };
  } finally {
    engine.dispose();
  }
}

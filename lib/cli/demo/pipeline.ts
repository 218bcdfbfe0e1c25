// The demo's pipeline: the R1V3 recipe on the visual-arithmetic world, one Trainer run per
// stage, each starting from the weights the stage before it ended with:
//   1 text      SFT of the language model on text-only problems (the digits written out)
//   2 align     SFT of the ViT and connector to transcribe the digits, the language model frozen
//   3 coldstart SFT on a small set of visual reasoning traces
//   4 grpo      GRPO with the R1V3 rewards (0.8·accuracy + 0.2·format) on images without traces
//   5 connector GRPO again with only the connector trainable
//   control     from the cold-start weights, more SFT on the cold-start traces, as many samples as GRPO saw
// and a held-out evaluation (test digits, greedy) after every stage. The stage settings are the
// YAML files of examples/mnist-arith/ (what `r1v train` runs there); a preset scales them.
import { promises as fsp } from 'node:fs';
import path from 'node:path';

import type { Engine } from '../../core/engine.js';
import type { DatasetRow } from '../../data/dataset.js';
import type { Tokenizer } from '../../data/tokenizer.js';
import { VisionLanguageModel } from '../../model/model.js';
import type { TrainConfig } from '../../train/config.js';
import type { StepMetrics } from '../../train/metrics.js';
import type { Progress } from '../../train/progress.js';
import type { StageEvaluation } from '../report/index.js';
import { Trainer } from '../../train/trainer.js';
import { makeRows, type QuestionKind } from './world.js';

/** How big the demo is: data sizes, and a factor on every stage's steps. */
export interface DemoPreset {
  name: 'quick' | 'full' | 'cuda';
  stepsScale: number;
  rows: { text: number; align: number; coldStart: number; rl: number; test: number };
}

export const PRESETS: Record<DemoPreset['name'], DemoPreset> = {
  quick: { name: 'quick', stepsScale: 0.4, rows: { text: 2000, align: 3000, coldStart: 100, rl: 1500, test: 100 } },
  full: { name: 'full', stepsScale: 1, rows: { text: 4000, align: 6000, coldStart: 100, rl: 3000, test: 200 } },
  cuda: { name: 'cuda', stepsScale: 3, rows: { text: 12000, align: 16000, coldStart: 200, rl: 9000, test: 500 } },
};

/** The stages in order; `from` names the stage whose final weights it starts from. */
export const STAGES = [
  { name: '1-text', from: undefined },
  { name: '2-align', from: '1-text' },
  { name: '3-coldstart', from: '2-align' },
  { name: '4-grpo', from: '3-coldstart' },
  { name: '5-connector', from: '4-grpo' },
  { name: 'control-sft', from: '3-coldstart' },
] as const;
export type StageName = (typeof STAGES)[number]['name'];

/** The rows each stage trains on, reproducible from the seed. */
export function stageRows(stage: StageName, preset: DemoPreset, seed: number): DatasetRow[] {
  const arithmetic: QuestionKind[] = ['sum', 'largest'];
  switch (stage) {
    // The language model also learns the transcription answers, which it must give, frozen, in stage 2.
    case '1-text': return makeRows(preset.rows.text, seed, { split: 'train', kinds: [...arithmetic, 'transcribe'], mode: 'text', withResponse: true });
    case '2-align': return makeRows(preset.rows.align, seed + 1, { split: 'train', kinds: ['transcribe'], mode: 'image', withResponse: true });
    case '3-coldstart':
    case 'control-sft': return makeRows(preset.rows.coldStart, seed + 2, { split: 'train', kinds: arithmetic, mode: 'image', withResponse: true });
    case '4-grpo':
    case '5-connector': return makeRows(preset.rows.rl, seed + 3, { split: 'train', kinds: arithmetic, mode: 'image', withResponse: false });
  }
}

/** The held-out rows: test digits, arithmetic questions, with images. */
export function testRows(preset: DemoPreset, seed: number): DatasetRow[] {
  return makeRows(preset.rows.test, seed + 100, { split: 'test', kinds: ['sum', 'largest'], mode: 'image', withResponse: false });
}

export interface PipelineContext {
  engine: Engine;
  tokenizer: Tokenizer;
  /** The model config (tokenizer vocabulary filled in). */
  modelConfig: Record<string, unknown>;
  /** Each stage's validated config (from the example's YAML, scaled by the preset). */
  configs: Record<StageName, TrainConfig>;
  preset: DemoPreset;
  seed: number;
  outDir: string;
  progress: Progress;
  signal?: AbortSignal | undefined;
}

export interface PipelineResult {
  seed: number;
  steps: StepMetrics[];
  evaluations: StageEvaluation[];
  checkpoints: Array<Record<string, number | string>>;
  stopped: boolean;
}

/** Runs every stage for one seed; returns the step metrics, evaluations and checkpoint metrics. */
export async function runPipeline(c: PipelineContext): Promise<PipelineResult> {
  const result: PipelineResult = { seed: c.seed, steps: [], evaluations: [], checkpoints: [], stopped: false };
  const finalWeights = new Map<string, string>();
  const test = testRows(c.preset, c.seed);
  let offset = 0;
  for (const stage of STAGES) {
    if (c.signal?.aborted) {
      result.stopped = true;
      break;
    }
    const config = structuredClone(c.configs[stage.name]);
    config.seed = c.seed;
    config.run.dir = path.join(c.outDir, `seed-${c.seed}`, stage.name);
    // The run directory records where its inputs are: the demo's tokenizer and the stage it starts from
    // (its rows are given in code; `r1v demo --write-data` writes them as files for `r1v train`).
    config.tokenizer = path.join(c.outDir, 'tokenizer');
    config.model = { ...config.model, ...(stage.from ? { path: finalWeights.get(stage.from)!, config: undefined } : { config: c.modelConfig, path: undefined }) };
    config.data = { ...config.data, train: undefined, val: undefined };
    const imageContextTokenId = c.tokenizer.imageContextTokenId;
    const model = stage.from
      ? await VisionLanguageModel.load(c.engine, finalWeights.get(stage.from)!, { imageContextTokenId, warn: () => undefined })
      : VisionLanguageModel.create(c.engine, c.modelConfig, { seed: c.seed, imageContextTokenId });
    const trainer = await Trainer.create({
      config, model, tokenizer: c.tokenizer, dataset: stageRows(stage.name, c.preset, c.seed), valDataset: test.slice(0, config.checkpoint.validation.prompts),
      signal: c.signal, log: (line) => { if (line.startsWith('checkpoint')) c.progress.log(`  ${stage.name} ${line}`); },
    });
    try {
      const total = config.stages.reduce((n, s) => n + s.steps, 0);
      c.progress.begin(`seed ${c.seed} ${stage.name}`, total);
      for await (const m of trainer.run()) {
        result.steps.push({ ...m, step: m.step + offset, stage: stage.name });
        c.progress.advance(1, m.kind === 'rl' ? { reward: m.reward_mean as number, accuracy: (m.accuracy as number) ?? 0 } : { loss: m.loss as number });
      }
      c.progress.end();
      offset += trainer.state.step;
      for (const h of trainer.state.history) result.checkpoints.push({ ...h.metrics, step: h.step + offset - trainer.state.step, stage: stage.name });
      if (c.signal?.aborted) {
        result.stopped = true;
        break;
      }
      const latest = await trainer.store.latest();
      finalWeights.set(stage.name, latest!.dir);
      c.progress.begin(`seed ${c.seed} ${stage.name}: held-out evaluation`, 1);
      const m = await trainer.evaluate(test, { temperature: 0 });
      c.progress.advance(1);
      c.progress.end();
      const evaluation = {
        stage: stage.name, accuracy: m.val_accuracy ?? 0, format_rate: m.val_format ?? 0, mean_length: m.val_length ?? 0,
        critical_entropy: m.critical_entropy ?? 0, critical_count: m.critical_count ?? 0,
      };
      result.evaluations.push(evaluation);
      c.progress.log(`seed ${c.seed} ${stage.name}: held-out accuracy ${(100 * evaluation.accuracy).toFixed(1)}%, format ${(100 * evaluation.format_rate).toFixed(1)}%, `
        + `mean length ${evaluation.mean_length.toFixed(1)}, critical-token entropy ${evaluation.critical_entropy.toFixed(3)} (${evaluation.critical_count} tokens)`);
      await fsp.writeFile(path.join(config.run.dir, 'evaluation.json'), `${JSON.stringify(evaluation, null, 2)}\n`);
    } finally {
      trainer.dispose();
      model.dispose();
    }
  }
  return result;
}

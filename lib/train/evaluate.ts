// Evaluation of a model on dataset rows: answers generated (greedy by default), scored with the
// built-in accuracy and format rewards and summarised as the validation metrics a checkpoint
// records. The trainer runs it at every checkpoint; `r1v eval` runs it on a file. Rows are
// generated a batch at a time (a batch's KV cache bounds the memory); a row's draws depend only
// on the seed and the row, not on its batch (the logits may differ in their last bits with the
// batch's shape, as the GEMM path depends on the number of rows).
import type { R1VError } from '../core/errors.js';
import * as is from '../core/validate.js';
import type { DatasetRow } from '../data/dataset.js';
import type { ImageProcessor } from '../data/image.js';
import type { Tokenizer } from '../data/tokenizer.js';
import type { VisionLanguageModel } from '../model/model.js';
import { accuracyReward, formatReward } from '../rewards/index.js';
import { rolloutMetrics } from './metrics.js';
import type { RolloutSample } from './samples.js';
import { rollout, score } from './steps.js';

export interface EvaluateOptions {
  tokenizer: Tokenizer;
  /** Token ids that begin a critical word (critical_entropy is their mean entropy). */
  criticalIds: ReadonlySet<number>;
  maxNewTokens: number;
  /** Sampling temperature; 0 = greedy. */
  temperature: number;
  seed: number;
  /** Responses per row, an integer ≥ 1 (the metrics average over all of them). Default 1. */
  samplesPerPrompt?: number;
  systemPrompt?: string | undefined;
  imageProcessor?: ImageProcessor | undefined;
  /** The training step, as reward functions see it. Default 0. */
  step?: number;
  /** Rows generated together, an integer ≥ 1. Default: all rows at once. */
  batchRows?: number;
  /** Stops after the current batch; the metrics cover the rows done. */
  signal?: AbortSignal;
  /** Called after each batch with the number of rows done. */
  onBatch?: (rowsDone: number) => void;
}

/**
 * The validation metrics (names as checkpoints record them): val_accuracy, val_format (format
 * rate), val_length (mean response tokens), critical_entropy and critical_count (entropy over
 * the critical tokens generated), val_samples (responses scored), val_skipped (rows whose prompt
 * could not be used).
 */
export interface Evaluation {
  metrics: Record<string, number>;
  samples: RolloutSample[];
  /** Rows whose prompt could not be used (an unreadable image, too long, ...), with the error. */
  skipped: Array<{ row: DatasetRow; error: R1VError }>;
  /** Rows generated (fewer than given when the signal stopped it). */
  rowsDone: number;
}

/** Generates, scores and summarises answers to `rows` (see the top of this file). */
export async function evaluateRows(model: VisionLanguageModel, rows: readonly DatasetRow[], o: EvaluateOptions): Promise<Evaluation> {
  const fn = 'evaluateRows';
  const samplesPerPrompt = is.optionalNumber(o.samplesPerPrompt, 'samplesPerPrompt', fn, 1, { integer: true, min: 1 });
  const batchRows = is.optionalNumber(o.batchRows, 'batchRows', fn, Math.max(1, rows.length), { integer: true, min: 1 });
  const samples: RolloutSample[] = [];
  const skipped: Evaluation['skipped'] = [];
  let rowsDone = 0;
  while (rowsDone < rows.length && !o.signal?.aborted) {
    const batch = rows.slice(rowsDone, rowsDone + batchRows);
    const r = await rollout(model, batch, {
      tokenizer: o.tokenizer, samplesPerPrompt, maxNewTokens: o.maxNewTokens, temperature: o.temperature, seed: o.seed,
      systemPrompt: o.systemPrompt, firstGroup: rowsDone, ...(o.imageProcessor ? { imageProcessor: o.imageProcessor } : {}),
    });
    samples.push(...r.samples);
    skipped.push(...r.skipped);
    rowsDone += batch.length;
    o.onBatch?.(rowsDone);
  }
  if (rowsDone === 0) return { metrics: {}, samples, skipped, rowsDone };
  await score(samples, [accuracyReward(), formatReward()], { step: o.step ?? 0 });
  return { metrics: evaluationMetrics(samples, skipped.length, o.criticalIds), samples, skipped, rowsDone };
}

/** The validation metrics of scored samples (see Evaluation), `skipped` rows not counted in them. */
export function evaluationMetrics(samples: readonly RolloutSample[], skipped: number, criticalIds: ReadonlySet<number>): Record<string, number> {
  const m = rolloutMetrics(samples, criticalIds);
  return {
    val_accuracy: m.accuracy ?? 0, val_format: m.format_rate ?? 0, val_length: m.response_length_mean ?? 0,
    critical_entropy: m.critical_entropy ?? 0, critical_count: m.critical_count ?? 0, val_samples: samples.length, val_skipped: skipped,
  };
}

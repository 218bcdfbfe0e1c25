// What a training step reports: the rollout's statistics (rewards per component, accuracy,
// format rate, entropy, critical-token entropy, lengths, truncation, zero-std groups), the
// update's (loss, KL, clip fractions, grad norm) and the time split — one flat object of numbers
// per step, appended as a line to metrics.jsonl and given to callbacks.
import { promises as fsp } from 'node:fs';

import { R1VError } from '../core/errors.js';
import { criticalTokenEntropy } from '../rl/index.js';
import type { RolloutSample } from './samples.js';

/** One step's metrics: identification, then numbers. */
export interface StepMetrics {
  /** Global step (1 = the first step of the run). */
  step: number;
  stage: string;
  stageStep: number;
  kind: 'sft' | 'rl';
  [metric: string]: number | string;
}

function mean(values: readonly number[]): number {
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : 0;
}

function std(values: readonly number[]): number {
  if (values.length < 2) return 0;
  const m = mean(values);
  return Math.sqrt(values.reduce((a, b) => a + (b - m) ** 2, 0) / (values.length - 1));
}

/** Statistics of a rollout batch (after scoring). */
export function rolloutMetrics(samples: readonly RolloutSample[], criticalIds: ReadonlySet<number>): Record<string, number> {
  const out: Record<string, number> = {};
  const rewards = samples.map((s) => s.reward);
  out.reward_mean = mean(rewards);
  out.reward_std = std(rewards);
  const components = new Set(samples.flatMap((s) => Object.keys(s.rewards)));
  for (const c of components) out[`reward_${c}`] = mean(samples.map((s) => s.rewards[c] ?? 0));
  if (components.has('accuracy')) out.accuracy = out.reward_accuracy!;
  if (components.has('format')) out.format_rate = out.reward_format!;
  const lengths = samples.map((s) => s.responseIds.length);
  out.response_length_mean = mean(lengths);
  out.response_length_max = lengths.length ? Math.max(...lengths) : 0;
  out.truncation_rate = mean(samples.map((s) => (s.finishReason === 'length' ? 1 : 0)));
  let entropySum = 0, tokens = 0;
  for (const s of samples) {
    for (const h of s.entropy) entropySum += h;
    tokens += s.entropy.length;
  }
  out.entropy = tokens ? entropySum / tokens : 0;
  const ids = Int32Array.from(samples.flatMap((s) => Array.from(s.responseIds)));
  const entropy = Float32Array.from(samples.flatMap((s) => Array.from(s.entropy)));
  const critical = criticalTokenEntropy(ids, entropy, criticalIds);
  out.critical_entropy = critical.count > 0 ? critical.mean : 0;
  out.critical_count = critical.count;
  const groups = new Map<number, number[]>();
  for (const s of samples) groups.set(s.group, [...(groups.get(s.group) ?? []), s.reward]);
  out.zero_std_groups = groups.size ? [...groups.values()].filter((r) => r.every((x) => x === r[0])).length / groups.size : 0;
  out.samples = samples.length;
  return out;
}

/** Appends step metrics to a JSONL file; on resume, drops the lines of steps after the checkpoint. */
export class MetricsLog {
  private constructor(readonly file: string) {}

  static async open(file: string, keepThroughStep?: number): Promise<MetricsLog> {
    try {
      if (keepThroughStep !== undefined) {
        const text = await fsp.readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => (error.code === 'ENOENT' ? '' : Promise.reject(error)));
        const kept = text.split('\n').filter((line) => {
          if (!line.trim()) return false;
          try {
            return (JSON.parse(line) as { step?: number }).step! <= keepThroughStep;
          } catch {
            return false;
          }
        });
        await fsp.writeFile(file, kept.length ? `${kept.join('\n')}\n` : '');
      }
    } catch (error) {
      throw new R1VError('IO', `metrics log ${file}: ${(error as Error).message}`, { cause: error });
    }
    return new MetricsLog(file);
  }

  async append(metrics: StepMetrics): Promise<void> {
    try {
      await fsp.appendFile(this.file, `${JSON.stringify(metrics)}\n`);
    } catch (error) {
      throw new R1VError('IO', `metrics log ${this.file}: ${(error as Error).message}`, { cause: error });
    }
  }
}

/** Reads a metrics.jsonl (lines that do not parse are skipped). */
export async function readMetrics(file: string): Promise<StepMetrics[]> {
  const text = await fsp.readFile(file, 'utf8');
  return text.split('\n').flatMap((line) => {
    try {
      return line.trim() ? [JSON.parse(line) as StepMetrics] : [];
    } catch {
      return [];
    }
  });
}

/** A one-line summary of a step for logs. */
export function formatStep(m: StepMetrics): string {
  const pick = (k: string, digits = 3) => (typeof m[k] === 'number' ? `${k} ${(m[k] as number).toFixed(digits)}` : undefined);
  const parts = m.kind === 'sft'
    ? [pick('loss'), pick('grad_norm'), pick('lr', 6)]
    : [pick('reward_mean'), pick('accuracy'), pick('format_rate'), pick('entropy'), pick('critical_entropy'), pick('kl', 4), pick('grad_norm'), pick('response_length_mean', 1)];
  return `[${m.stage} ${m.stageStep}] step ${m.step}: ${parts.filter(Boolean).join(', ')}${m.skipped ? ' (update skipped: non-finite)' : ''}`;
}

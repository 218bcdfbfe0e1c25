// The steps of one RL iteration that need no gradients, each usable on its own in a user's loop:
//   rollout      prompts → n responses each (generate), the samples of one prompt form a group
//   score        rewards per sample (lib/rewards), DAPO overlong shaping, KL-in-reward
//   perToken     a no-grad forward over samples: old logprobs, reference logprobs, critic values
//   advantages   per-token advantages from an outcome estimator (grpo, rloo, reinforce++) or GAE
// The update (through the per-token coefficient seam) is in update.ts.
import { R1VError } from '../core/errors.js';
import type { DatasetRow } from '../data/dataset.js';
import type { ImageProcessor } from '../data/image.js';
import type { Tokenizer } from '../data/tokenizer.js';
import type { VisionLanguageModel } from '../model/model.js';
import { scoreSamples, type Reward, type ScoreResult } from '../rewards/index.js';
import * as rl from '../rl/index.js';
import { generate } from '../rollout/generate.js';
import type { StageConfig } from './config.js';
import { concatField, microBatches, packSequences, responseOffsets, rowPrompt, sequenceTokens, type RolloutSample } from './samples.js';

export interface RolloutOptions {
  tokenizer: Tokenizer;
  /** Responses per prompt. */
  samplesPerPrompt: number;
  maxNewTokens: number;
  temperature: number;
  topP?: number;
  topK?: number;
  stopStrings?: readonly string[];
  /** Stop token ids (default: the tokenizer's end-of-sequence ids). */
  stopTokenIds?: readonly number[];
  seed: number;
  systemPrompt?: string | undefined;
  imageProcessor?: ImageProcessor;
  signal?: AbortSignal | undefined;
  /** Index of the first prompt's group (groups are numbered across draws of one step). */
  firstGroup?: number;
}

export interface RolloutResult {
  samples: RolloutSample[];
  /** Rows whose prompt could not be used (an unreadable image, too long, ...), with the error. */
  skipped: Array<{ row: DatasetRow; error: R1VError }>;
  generatedTokens: number;
}

/**
 * Generates samplesPerPrompt responses for each row; rows that fail are skipped, not fatal. A row
 * is rendered with the chat template (rowPrompt), unless it carries its prompt as `inputIds`
 * (Int32Array, image placeholders expanded) and `pixelValues`.
 */
export async function rollout(model: VisionLanguageModel, rows: readonly DatasetRow[], o: RolloutOptions): Promise<RolloutResult> {
  const prompts = rows.map((r) => (r.inputIds instanceof Int32Array
    ? { inputIds: r.inputIds, ...(r.pixelValues instanceof Float32Array ? { pixelValues: r.pixelValues } : {}) }
    : rowPrompt(r, o.systemPrompt)));
  const out = await generate(model, prompts, {
    n: o.samplesPerPrompt, maxNewTokens: o.maxNewTokens, temperature: o.temperature, topP: o.topP ?? 1, topK: o.topK ?? 0,
    seed: o.seed, tokenizer: o.tokenizer,
    stop: { strings: [...(o.stopStrings ?? [])], ...(o.stopTokenIds ? { tokenIds: [...o.stopTokenIds] } : {}) },
    ...(o.imageProcessor ? { imageProcessor: o.imageProcessor } : {}), ...(o.signal ? { signal: o.signal } : {}),
  });
  const samples: RolloutSample[] = [];
  const skipped: RolloutResult['skipped'] = [];
  out.prompts.forEach((p, i) => {
    if (p instanceof R1VError) skipped.push({ row: rows[i]!, error: p });
  });
  for (const g of out) {
    const p = out.prompts[g.prompt]!;
    if (p instanceof R1VError || g.finishReason === 'error') continue;
    samples.push({
      group: (o.firstGroup ?? 0) + g.prompt, row: rows[g.prompt]!, promptIds: p.inputIds, pixelValues: p.pixelValues,
      responseIds: g.tokenIds, text: g.text, finishReason: g.finishReason, logprobs: g.logprobs, entropy: g.entropy,
      reward: 0, rewards: {},
    });
  }
  return { samples, skipped, generatedTokens: out.stats.generatedTokens };
}

export interface ScoreStepOptions {
  step: number;
  timeoutMs?: number;
  onError?: (name: string, sampleIndex: number, error: unknown) => void;
  /** DAPO's soft overlong punishment against maxNewTokens. */
  overlong?: { buffer: number; penalty: number; maxNewTokens: number } | undefined;
}

/**
 * DAPO's overlong shaping of a response of L tokens with budget Lmax and buffer B:
 * 0 for L ≤ Lmax − B, then −penalty·(L − (Lmax − B))/B, reaching −penalty at L = Lmax.
 */
export function overlongPenalty(length: number, o: { buffer: number; penalty: number; maxNewTokens: number }): number {
  const start = o.maxNewTokens - o.buffer;
  if (length <= start) return 0;
  return -o.penalty * Math.min(1, (length - start) / o.buffer);
}

/** Scores every sample (sets reward and rewards); failures are counted, never fatal. */
export async function score(samples: RolloutSample[], rewards: readonly Reward[], o: ScoreStepOptions): Promise<ScoreResult> {
  const result = await scoreSamples(
    samples.map((s) => ({ text: s.text, row: s.row, step: o.step, finishReason: s.finishReason, responseLength: s.responseIds.length })),
    [...rewards], { ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}), ...(o.onError ? { onError: o.onError } : {}) },
  );
  samples.forEach((s, i) => {
    const r = result.scores[i]!;
    s.rewards = { ...r.components };
    s.reward = r.total;
    if (o.overlong) {
      const penalty = overlongPenalty(s.responseIds.length, o.overlong);
      s.rewards.overlong = penalty;
      s.reward += penalty;
    }
  });
  return result;
}

/** Groups whose rewards are not all equal (DAPO dynamic sampling keeps only these). */
export function informativeGroups(samples: readonly RolloutSample[]): Set<number> {
  const byGroup = new Map<number, number[]>();
  for (const s of samples) byGroup.set(s.group, [...(byGroup.get(s.group) ?? []), s.reward]);
  return new Set([...byGroup].filter(([, r]) => r.some((x) => x !== r[0])).map(([g]) => g));
}

/**
 * A no-grad forward over the samples, micro-batched by tokens: per sample, the logprobs (under
 * softmax(logits / temperature)) or, for a critic, the values of its response positions.
 */
export async function perToken(model: VisionLanguageModel, samples: readonly RolloutSample[], what: 'logprobs' | 'values',
  o: { microBatchTokens: number; temperature: number }): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (const micro of microBatches(samples, sequenceTokens, o.microBatchTokens)) {
    const f = await model.forward(packSequences(micro), { temperature: o.temperature, tokenStats: what === 'logprobs' });
    const values = what === 'logprobs' ? f.logprobs : f.values!;
    const cu = responseOffsets(micro);
    micro.forEach((_, i) => out.push(values.slice(cu[i]!, cu[i + 1]!)));
  }
  return out;
}

/** Subtracts coef·Σ KL per token from each sample's reward (kl.mode 'reward' with an outcome estimator). */
export function klRewardPenalty(samples: RolloutSample[], kl: { kind: rl.KlKind; coef: number }): void {
  for (const s of samples) {
    const penalty = rl.klPenalty(s.logprobs, s.refLogprobs!, kl.kind).reduce((a, x) => a + x, 0) * kl.coef;
    s.rewards.kl = -penalty;
    s.reward -= penalty;
  }
}

/**
 * Per-token advantages (and, for GAE, returns) of every sample. Samples must come in whole
 * groups of groupSize, consecutive (as rollout returns them).
 */
export function advantages(samples: RolloutSample[], algorithm: StageConfig['algorithm'], groupSize: number): void {
  const rewards = samples.map((s) => s.reward);
  const cu = responseOffsets(samples);
  let perToken: Float32Array;
  if (algorithm.advantage === 'gae') {
    // The outcome reward lands on the last token; KL in reward mode is charged per token.
    const tokenRewards = new Float32Array(cu[cu.length - 1]!);
    samples.forEach((s, i) => {
      if (algorithm.kl?.mode === 'reward') {
        const kl = rl.klPenalty(s.logprobs, s.refLogprobs!, algorithm.kl.kind);
        kl.forEach((x, t) => (tokenRewards[cu[i]! + t] = -algorithm.kl!.coef * x));
      }
      tokenRewards[cu[i + 1]! - 1]! += s.reward - (s.rewards.kl ?? 0);
    });
    const r = rl.advantages.gae(tokenRewards, concatField(samples, (s) => s.values), cu, { gamma: algorithm.gamma, lambda: algorithm.lambda });
    // verl whitens GAE advantages over the batch; so does r1v.
    const whitened = rl.advantages.reinforcePlusPlus(r.advantages);
    samples.forEach((s, i) => {
      s.returns = r.returns.slice(cu[i]!, cu[i + 1]!);
      s.advantages = whitened.slice(cu[i]!, cu[i + 1]!);
    });
    return;
  }
  if (algorithm.advantage === 'grpo') perToken = rl.advantages.grpo(rewards, { groupSize, scaleByStd: algorithm.scaleByStd });
  else if (algorithm.advantage === 'rloo') perToken = rl.advantages.rloo(rewards, { groupSize });
  else perToken = rl.advantages.reinforcePlusPlus(rewards, { groupSize });
  const expanded = rl.expandToTokens(perToken, cu);
  samples.forEach((s, i) => (s.advantages = expanded.slice(cu[i]!, cu[i + 1]!)));
}

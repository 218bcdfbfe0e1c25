// Per-token statistics of softmax(logits / temperature) — log-prob of the target token and
// entropy — and their backward from per-token coefficients, plain and fused with the LM head.
import { native } from '../core/native.js';
import type { FloatDType, Tensor } from '../core/tensor.js';
import { optionsArg, tensorArg, wrap } from './common.js';

export interface TokenStatsOptions {
  /** Softmax temperature T: the statistics are of softmax(logits / T). Finite and > 0; default 1. */
  temperature?: number;
}

export interface LinearTokenStatsOptions extends TokenStatsOptions {
  /**
   * Vocabulary columns per step (a positive integer): the extra memory is O(N·chunk). Default
   * 4096 on the CPU and 8192 on CUDA. It changes the memory/speed trade-off, not the result
   * (up to rounding).
   */
  chunk?: number;
}

/** Per-token statistics, f32 [N] each. */
export interface TokenStats {
  /** log p[target] under softmax(logits / T). */
  logprobs: Tensor<'f32'>;
  /** −Σ_j p_j log p_j of softmax(logits / T). */
  entropy: Tensor<'f32'>;
}

/** Gradients of linearTokenStats, in the dtype of hidden/weight. */
export interface LinearTokenStatsGradients<D extends FloatDType> {
  /** [N, Hd] */
  dHidden: Tensor<D>;
  /** [V, Hd] */
  dWeight: Tensor<D>;
}


/**
 * log p[target] and entropy −Σ p log p of softmax(logits / temperature), per row, computed in f32
 * whatever the logits dtype. logits [N, V] (CPU: f32; CUDA: f32, bf16, f16), targets i32 [N]
 * with ids in [0, V). A target outside [0, V) is found when the work runs: reading the results
 * then rejects with R1VError('ARGUMENT') naming targets (on CUDA the affected rows are NaN and
 * the next readback reports it). A row whose logits are all −inf gives NaN.
 */
export function tokenStats(logits: Tensor<FloatDType>, targets: Tensor<'i32'>, options?: TokenStatsOptions): TokenStats {
  const tl = tensorArg<Tensor<FloatDType>>(logits, 'tokenStats: logits');
  const tt = tensorArg<Tensor<'i32'>>(targets, 'tokenStats: targets');
  const o = optionsArg(options, 'tokenStats');
  const r = native().tokenStats(tl.handle, tt.handle, o);
  return { logprobs: wrap(tl, r.logprobs), entropy: wrap(tl, r.entropy) };
}

/**
 * Backward of tokenStats for a loss given per token as dL/dlogprob and dL/dentropy (f32 [N]
 * each): with u = logits / T, p = softmax(u) and H the entropy,
 * dLogits_j = (dLogprobs·(1[j = target] − p_j) − dEntropy·p_j·(log p_j + H)) / T.
 * Returns dLogits [N, V] in the logits dtype. Same checks and options as tokenStats.
 */
export function tokenStatsBackward<D extends FloatDType>(
  logits: Tensor<D>, targets: Tensor<'i32'>, dLogprobs: Tensor<'f32'>, dEntropy: Tensor<'f32'>,
  options?: TokenStatsOptions,
): Tensor<D> {
  const tl = tensorArg<Tensor<D>>(logits, 'tokenStatsBackward: logits');
  const tt = tensorArg<Tensor<'i32'>>(targets, 'tokenStatsBackward: targets');
  const tdl = tensorArg<Tensor<'f32'>>(dLogprobs, 'tokenStatsBackward: dLogprobs');
  const tde = tensorArg<Tensor<'f32'>>(dEntropy, 'tokenStatsBackward: dEntropy');
  const o = optionsArg(options, 'tokenStatsBackward');
  return wrap(tl, native().tokenStatsBackward(tl.handle, tt.handle, tdl.handle, tde.handle, o));
}

/**
 * tokenStats of logits = hidden · weightᵀ (hidden [N, Hd], weight [V, Hd], the LM head) without
 * ever storing the [N, V] logits: the vocabulary is walked `chunk` columns at a time with running
 * max/sum statistics, so the extra memory is O(N·chunk). The chunk logits are rounded to the
 * input dtype, like a materialised matmul; the statistics are f32.
 */
export function linearTokenStats(
  hidden: Tensor<FloatDType>, weight: Tensor<FloatDType>, targets: Tensor<'i32'>, options?: LinearTokenStatsOptions,
): TokenStats {
  const th = tensorArg<Tensor<FloatDType>>(hidden, 'linearTokenStats: hidden');
  const tw = tensorArg<Tensor<FloatDType>>(weight, 'linearTokenStats: weight');
  const tt = tensorArg<Tensor<'i32'>>(targets, 'linearTokenStats: targets');
  const o = optionsArg(options, 'linearTokenStats');
  const r = native().linearTokenStats(th.handle, tw.handle, tt.handle, o);
  return { logprobs: wrap(th, r.logprobs), entropy: wrap(th, r.entropy) };
}

/**
 * Backward of linearTokenStats (see tokenStatsBackward for the per-logit formula): dHidden
 * [N, Hd] and dWeight [V, Hd] in the input dtype, recomputing each chunk's logits instead of
 * storing them (extra memory O(N·chunk), plus an f32 [N, Hd] sum for 16-bit dHidden on CUDA).
 */
export function linearTokenStatsBackward<D extends FloatDType>(
  hidden: Tensor<D>, weight: Tensor<D>, targets: Tensor<'i32'>, dLogprobs: Tensor<'f32'>, dEntropy: Tensor<'f32'>,
  options?: LinearTokenStatsOptions,
): LinearTokenStatsGradients<D> {
  const fn = 'linearTokenStatsBackward';
  const th = tensorArg<Tensor<D>>(hidden, `${fn}: hidden`);
  const tw = tensorArg<Tensor<D>>(weight, `${fn}: weight`);
  const tt = tensorArg<Tensor<'i32'>>(targets, `${fn}: targets`);
  const tdl = tensorArg<Tensor<'f32'>>(dLogprobs, `${fn}: dLogprobs`);
  const tde = tensorArg<Tensor<'f32'>>(dEntropy, `${fn}: dEntropy`);
  const o = optionsArg(options, fn);
  const g = native().linearTokenStatsBackward(th.handle, tw.handle, tt.handle, tdl.handle, tde.handle, o);
  return { dHidden: wrap(th, g.dHidden), dWeight: wrap(th, g.dWeight) };
}

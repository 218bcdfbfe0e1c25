// Token sampling for generation: one token per row of logits with temperature, top-k, top-p
// and banned tokens, reproducible per (seed, offset).
import { native } from '../core/native.js';
import type { FloatDType, Tensor } from '../core/tensor.js';
import { optionsArg, tensorArg, wrap } from './common.js';

export interface SampleTokensOptions {
  /**
   * One seed per row: a BigUint64Array, or safe non-negative integers. With `offsets` it is the
   * whole key of the row's random draw (Philox4x32-10), so a row samples the same token whatever
   * batch it is in and wherever in it.
   */
  seeds: BigUint64Array | number[];
  /**
   * One counter per row (≥ 0), typically the generation step: the draw of a row depends only on
   * (seed, offset), so use a new offset for every step of a sequence.
   */
  offsets: Int32Array | number[];
  /**
   * Softmax temperature T ≥ 0, finite: tokens are drawn from softmax(logits / T). 0 is greedy
   * (the largest non-banned logit, the lowest id on ties). Default 1.
   */
  temperature?: number;
  /** Keep only the topK most likely tokens (an integer ≥ 0; ties → lower id). 0 (default) = off. */
  topK?: number;
  /**
   * Nucleus sampling, in (0, 1]; 1 (default) = off. After top-k, tokens are taken by descending
   * probability (ties → lower id) while the mass before the token is < topP of the remaining total
   * (the HF/vLLM rule): the shortest such prefix whose mass reaches topP.
   */
  topP?: number;
  /**
   * Token ids in [0, V) that are never sampled (their logits count as −∞ for sampling). A row in
   * which every token is banned (or −∞/NaN) has nothing to sample: reading the results rejects
   * with R1VError('ARGUMENT').
   */
  bannedTokenIds?: Int32Array | number[];
}

/** The sampled tokens and their statistics, one per row. */
export interface SampledTokens {
  /** i32 [N], the sampled token ids. */
  tokens: Tensor<'i32'>;
  /**
   * f32 [N], log softmax(logits / T)[token] over ALL tokens (banned ones and the top-k/top-p
   * truncation are ignored here; T = 1 when temperature is 0): exactly what tokenStats gives for
   * these tokens, so generation log-probs match a later tokenStats pass of the model.
   */
  logprobs: Tensor<'f32'>;
  /** f32 [N], the entropy of the same distribution (softmax(logits / T) over all tokens). */
  entropy: Tensor<'f32'>;
}


/**
 * Draws one token per row of logits [N, V] (CPU: f32; CUDA: f32, bf16, f16): p = softmax(logits / T)
 * over the non-banned tokens, truncated by topK then topP, renormalised, and sampled with one
 * uniform per row from Philox4x32-10 keyed by (seeds[i], offsets[i]). Bad options (lengths ≠ N,
 * negative offsets, temperature < 0, topK not an integer ≥ 0, topP outside (0, 1], banned ids
 * outside [0, V)) throw R1VError('ARGUMENT') at once.
 */
export function sampleTokens(logits: Tensor<FloatDType>, options: SampleTokensOptions): SampledTokens {
  const tl = tensorArg<Tensor<FloatDType>>(logits, 'sampleTokens: logits');
  const o = optionsArg(options, 'sampleTokens');
  const r = native().sampleTokens(tl.handle, o as SampleTokensOptions);
  return { tokens: wrap(tl, r.tokens), logprobs: wrap(tl, r.logprobs), entropy: wrap(tl, r.entropy) };
}

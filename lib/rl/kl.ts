// Per-token estimators of KL(π_θ ‖ π_ref) from the log-probabilities of the sampled tokens
// (Schulman, "Approximating KL divergence", 2020), with their exact derivatives in logp, and the
// per-token penalty a trainer subtracts from its rewards when the KL goes into the reward.
//
// Conventions: d = logp − ref per token (logp: the policy being trained, ref: the frozen
// reference model). Inputs are ArrayLike<number> read in float64; klPenalty returns Float32Array.
// verl clamps k3 (ref − logp to [−20, 20], the estimate to [−10, 10]) for stability; r1v does not
// clamp, so that values and derivatives are those of the formulas for every input.
import { oneOf } from '../core/validate.js';
import { sameLengthArrays } from './inputs.js';

export const KL_KINDS = ['k1', 'k2', 'k3'] as const;
export type KlKind = (typeof KL_KINDS)[number];

/** One estimator: its value at d = logp − ref and ∂value/∂logp. */
export interface KlEstimator {
  value(d: number): number;
  dLogprob(d: number): number;
}

export const klEstimators: Record<KlKind, KlEstimator> = {
  /** k1 = logp − ref = d; ∂/∂logp = 1. Unbiased, high variance, can be negative. */
  k1: { value: (d) => d, dLogprob: () => 1 },
  /** k2 = ½ (logp − ref)² = ½ d²; ∂/∂logp = d. Its gradient is the gradient of the true KL. */
  k2: { value: (d) => 0.5 * d * d, dLogprob: (d) => d },
  /**
   * k3 = exp(ref − logp) − (ref − logp) − 1 = e^{−d} + d − 1 ≥ 0; ∂/∂logp = 1 − e^{−d}.
   * Unbiased, low variance ("low_var_kl" in verl, the KL term of TRL's GRPO). e^{−d} − 1 + d is
   * evaluated as expm1(−d) + d, exact for small d.
   */
  k3: { value: (d) => Math.expm1(-d) + d, dLogprob: (d) => -Math.expm1(-d) },
};

/**
 * Per-token KL values of `kind` (for `kl.mode: 'reward'`: the trainer subtracts coef · these from
 * the token rewards before computing advantages).
 */
export function klPenalty(logprobs: ArrayLike<number>, refLogprobs: ArrayLike<number>, kind: KlKind): Float32Array {
  const where = 'rl.klPenalty';
  const arrays = sameLengthArrays(where, { logprobs, refLogprobs });
  const estimator = klEstimators[oneOf(kind, 'kind', where, KL_KINDS)];
  const out = new Float32Array(arrays.logprobs.length);
  for (let t = 0; t < out.length; t++) out[t] = estimator.value(arrays.logprobs[t]! - arrays.refLogprobs[t]!);
  return out;
}

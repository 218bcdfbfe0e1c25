// The RL algorithms of r1v as pure functions over per-token arrays (the seam with the engine:
// the model's forward gives logprobs and entropy per scored token, a loss here gives back
// dLogprobs = ∂loss/∂logprobs and dEntropy = ∂loss/∂entropy). Estimators and policy-loss kinds
// are named entries of registries (`advantages`, `policyLossKinds`, `aggregations`,
// `klEstimators`); docs/algorithms.md lists their equations.
export {
  advantages, grpo, rloo, reinforcePlusPlus, gae, expandToTokens, groupStatistics,
  type GrpoOptions, type GaeOptions,
} from './advantages.js';
export {
  AGGREGATIONS, aggregations, aggregationWeights, type Aggregation, type AggregationOptions,
} from './aggregate.js';
export {
  policyLoss, policyLossKinds, POLICY_LOSS_KINDS, KL_MODES,
  type PolicyLossKind, type PolicyLossKindFn, type PolicyTerms, type PerTokenPolicyLoss, type ClipRange,
  type PolicyLossInput, type PolicyLossResult, type PolicyLossMetrics, type KlOptions,
} from './policy-loss.js';
export { valueLoss, type ValueLossInput, type ValueLossResult } from './value-loss.js';
export { klPenalty, klEstimators, KL_KINDS, type KlKind, type KlEstimator } from './kl.js';
export {
  criticalTokenIds, criticalTokenEntropy, DEFAULT_CRITICAL_WORDS, type CriticalTokenizer,
} from './critical-tokens.js';

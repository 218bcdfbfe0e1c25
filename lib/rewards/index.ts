// Rule-based rewards for RL: answer extraction, answer equivalence, the R1V3 format and
// accuracy rewards, and weighted scoring of samples with user rewards (docs/rewards.md).
export {
  extractAnswer, formatScore, DEFAULT_END_MARKERS, type ExtractAnswerOptions, type FormatOptions,
} from './answer.js';
export { answersEquivalent, DEFAULT_RELATIVE_TOLERANCE, type EquivalenceOptions } from './equivalence.js';
export {
  formatReward, accuracyReward, r1v3Rewards, type FormatRewardOptions, type AccuracyRewardOptions, type R1V3RewardOptions,
} from './builtin.js';
export {
  scoreSamples, validateRewards, type Reward, type RewardFn, type RewardSample, type RewardRow, type ScoreOptions,
  type SampleScore, type RewardFailures, type ScoreResult,
} from './score.js';

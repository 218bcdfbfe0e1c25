// The rule-based rewards of the R1V3 recipe: format (think block, then an answer) and accuracy
// (the extracted answer is equivalent to the row's ground truth), weighted 0.2 and 0.8.
// Option objects are checked once, when a reward is made; the reward functions themselves are
// synchronous and total over any response text.
import { fail, isObject, number, optionalBoolean, options, show } from '../core/validate.js';
import {
  EXTRACT_KEYS, extractAnswerWith, extractSettings, FORMAT_KEYS, formatScoreWith, formatSettings,
  type ExtractAnswerOptions, type FormatOptions,
} from './answer.js';
import { equivalentWith, toleranceOption, type EquivalenceOptions } from './equivalence.js';
import { rewardName, type Reward, type RewardSample } from './score.js';

interface RewardIdentityOptions {
  /** The reward's name (its component key). */
  name?: string;
  /** Its weight in the total. Default 1. */
  weight?: number;
}

export interface FormatRewardOptions extends FormatOptions, RewardIdentityOptions {}

export interface AccuracyRewardOptions extends ExtractAnswerOptions, EquivalenceOptions, RewardIdentityOptions {}

function identity(o: { name?: unknown; weight?: unknown }, where: string, defaultName: string): { name: string; weight: number } {
  return {
    name: o.name === undefined ? defaultName : rewardName(o.name, 'name', where),
    weight: o.weight === undefined ? 1 : number(o.weight, 'weight', where),
  };
}

function responseText(sample: RewardSample, where: string): string {
  if (!isObject(sample) || typeof sample.text !== 'string') fail(where, `sample.text must be a string, got ${show(isObject(sample) ? sample.text : sample)}`);
  return sample.text;
}

/** The row's ground truth as a string: `row.answer`, a string or a finite number. */
function groundTruth(sample: RewardSample, where: string): string {
  const answer: unknown = isObject(sample.row) ? sample.row.answer : undefined;
  if (typeof answer === 'string') return answer;
  if (typeof answer === 'number' && Number.isFinite(answer)) return String(answer);
  return fail(where, `sample.row.answer must be a string or a finite number, got ${isObject(sample.row) ? show(answer) : `row ${show(sample.row)}`}`);
}

/** 1 when the response is a think block followed by an answer (FormatOptions), else 0. Named 'format'. */
export function formatReward(rewardOptions?: FormatRewardOptions): Reward {
  const where = 'formatReward';
  const o = options(rewardOptions, [...FORMAT_KEYS, 'name', 'weight'], where);
  const settings = formatSettings(o, where);
  return { ...identity(o, where, 'format'), fn: (sample) => formatScoreWith(responseText(sample, where), settings) };
}

/**
 * 1 when the response's answer (extractAnswer) is equivalent to `row.answer` (answersEquivalent),
 * else 0; a response without an answer scores 0. A row without a usable answer throws
 * R1VError('ARGUMENT') (scoreSamples counts it and scores 0). Named 'accuracy'.
 */
export function accuracyReward(rewardOptions?: AccuracyRewardOptions): Reward {
  const where = 'accuracyReward';
  const o = options(rewardOptions, [...EXTRACT_KEYS, 'relativeTolerance', 'name', 'weight'], where);
  const settings = extractSettings(o, where);
  const tolerance = toleranceOption(o.relativeTolerance, where);
  return {
    ...identity(o, where, 'accuracy'),
    fn: (sample) => {
      const truth = groundTruth(sample, where);
      const answer = extractAnswerWith(responseText(sample, where), settings);
      return answer !== null && equivalentWith(answer, truth, tolerance) ? 1 : 0;
    },
  };
}

export interface R1V3RewardOptions {
  /** The chat template opens the think block (both rewards' thinkInPrompt default). Default false. */
  thinkInPrompt?: boolean;
  /** Options of the accuracy reward (weight default 0.8). */
  accuracy?: AccuracyRewardOptions;
  /** Options of the format reward (weight default 0.2). */
  format?: FormatRewardOptions;
}

/** R1V3's default rewards: [accuracy × 0.8, format × 0.2]. */
export function r1v3Rewards(rewardOptions?: R1V3RewardOptions): Reward[] {
  const where = 'r1v3Rewards';
  const o = options(rewardOptions, ['thinkInPrompt', 'accuracy', 'format'], where);
  const thinkInPrompt = optionalBoolean(o.thinkInPrompt, 'thinkInPrompt', where, false);
  for (const key of ['accuracy', 'format'] as const) {
    if (o[key] !== undefined && !isObject(o[key])) fail(where, `${key} must be an options object, got ${show(o[key])}`);
  }
  return [
    accuracyReward({ weight: 0.8, thinkInPrompt, ...(o.accuracy as AccuracyRewardOptions | undefined) }),
    formatReward({ weight: 0.2, thinkInPrompt, ...(o.format as FormatRewardOptions | undefined) }),
  ];
}

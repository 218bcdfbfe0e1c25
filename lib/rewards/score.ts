// Scoring samples with a weighted set of rewards.
//
// A reward is { name, weight, fn }; fn(sample) returns a number or a Promise of one. A sample's
// total is Σ weight · component. Failure policy: a call that throws (or rejects), returns
// anything but a finite number, or takes longer than timeoutMs scores 0 for that sample, is
// counted per reward in `failures` and passed to onError(name, sampleIndex, error); scoring
// goes on. A Promise that never settles is abandoned at its timeout (the timer is cleared once
// the race is decided, so nothing keeps the process alive). A synchronous fn cannot be
// interrupted on the JavaScript thread: one that loops forever blocks scoring; one that returns
// late is scored 0 as timed out, like an async one.
import { R1VError } from '../core/errors.js';
import { fail, func, isObject, number, options, show } from '../core/validate.js';

/** A dataset row: any object with the ground truth under `answer`. */
export interface RewardRow {
  answer: unknown;
  [key: string]: unknown;
}

/** What a reward sees: the response text, its dataset row, the training step and anything else the caller adds. */
export interface RewardSample {
  text: string;
  row: RewardRow;
  step: number;
  [key: string]: unknown;
}

export type RewardFn<S extends RewardSample = RewardSample> = (sample: S) => number | Promise<number>;

export interface Reward<S extends RewardSample = RewardSample> {
  /** Unique among the rewards scored together; the key of the sample's component. */
  name: string;
  /** Multiplies the component in the total (any finite number; negative for penalties). */
  weight: number;
  fn: RewardFn<S>;
}

export interface ScoreOptions {
  /** Per call: a call that has not settled after this long scores 0. Default 10 000. */
  timeoutMs?: number;
  /** Reward calls in flight at once. Default 16. */
  concurrency?: number;
  /** Called for every failed call (after it is counted); default: nothing. Must not throw. */
  onError?: (name: string, sampleIndex: number, error: unknown) => void;
}

export interface SampleScore {
  /** Σ weight · component. */
  total: number;
  /** Each reward's value by name (0 for a failed call). */
  components: Record<string, number>;
}

/** Failed calls of one reward. */
export interface RewardFailures {
  /** The call threw or its Promise rejected. */
  thrown: number;
  /** It returned something other than a finite number (NaN, Infinity, a string, ...). */
  invalid: number;
  /** It had not settled after timeoutMs. */
  timedOut: number;
}

export interface ScoreResult {
  /** One per sample, in order. */
  scores: SampleScore[];
  /** Per reward name (every reward has an entry). */
  failures: Record<string, RewardFailures>;
}

/** A reward name: a non-empty string. */
export function rewardName(value: unknown, key: string, where: string): string {
  if (typeof value !== 'string' || value === '') fail(where, `${key} must be a non-empty string, got ${show(value)}`);
  return value;
}

/** Checks a list of reward specs (non-empty, each { name, weight, fn }, names unique); returns copies. */
export function validateRewards<S extends RewardSample>(rewards: unknown, where: string): Reward<S>[] {
  if (!Array.isArray(rewards) || rewards.length === 0) fail(where, `rewards must be a non-empty array, got ${show(rewards)}`);
  const seen = new Map<string, number>();
  return rewards.map((spec: unknown, i) => {
    const at = `rewards[${i}]`;
    if (!isObject(spec)) fail(where, `${at} must be an object { name, weight, fn }, got ${show(spec)}`);
    const o = options(spec, ['name', 'weight', 'fn'], `${where}: ${at}`);
    const name = rewardName(o.name, `${at}.name`, where);
    const earlier = seen.get(name);
    if (earlier !== undefined) fail(where, `${at}.name '${name}' is already the name of rewards[${earlier}]`);
    seen.set(name, i);
    const weight = number(o.weight, `${at}.weight`, where);
    return { name, weight, fn: func<RewardFn<S>>(o.fn, `${at}.fn`, where) };
  });
}

type Outcome = { value: number } | { failure: keyof RewardFailures; error: unknown };

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

/** The settled value of `pending`, or 'timeout' after ms; the timer is cleared either way. */
async function settleWithin(pending: PromiseLike<unknown>, ms: number): Promise<{ value: unknown } | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  try {
    return await Promise.race([Promise.resolve(pending).then((value) => ({ value })), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function callReward<S extends RewardSample>(reward: Reward<S>, sample: S, index: number, timeoutMs: number): Promise<Outcome> {
  const timeoutError = () => new DOMException(`reward '${reward.name}' took longer than ${timeoutMs} ms on samples[${index}]`, 'TimeoutError');
  let result: unknown;
  try {
    const started = performance.now();
    result = reward.fn(sample);
    if (isThenable(result)) {
      const settled = await settleWithin(result, timeoutMs);
      if (settled === 'timeout') return { failure: 'timedOut', error: timeoutError() };
      result = settled.value;
    } else if (performance.now() - started > timeoutMs) {
      return { failure: 'timedOut', error: timeoutError() };
    }
  } catch (error) {
    return { failure: 'thrown', error };
  }
  if (typeof result !== 'number' || !Number.isFinite(result)) {
    const message = `scoreSamples: reward '${reward.name}' returned ${show(result)} for samples[${index}] (a reward must be a finite number)`;
    return { failure: 'invalid', error: new R1VError('ARGUMENT', message) };
  }
  return { value: result };
}

/** Scores every sample with every reward (see the failure policy at the top of this file). */
export async function scoreSamples<S extends RewardSample>(
  samples: readonly S[], rewards: readonly Reward<S>[], scoreOptions?: ScoreOptions,
): Promise<ScoreResult> {
  const where = 'scoreSamples';
  const o = options(scoreOptions, ['timeoutMs', 'concurrency', 'onError'], where);
  const timeoutMs = o.timeoutMs === undefined ? 10_000 : number(o.timeoutMs, 'timeoutMs', where, { above: 0, max: 2 ** 31 - 1 });
  const concurrency = o.concurrency === undefined ? 16 : number(o.concurrency, 'concurrency', where, { integer: true, min: 1 });
  const onError = o.onError === undefined ? undefined : func<NonNullable<ScoreOptions['onError']>>(o.onError, 'onError', where);
  const specs = validateRewards<S>(rewards, where);
  if (!Array.isArray(samples)) fail(where, `samples must be an array, got ${show(samples)}`);
  samples.forEach((sample: unknown, i) => {
    if (!isObject(sample) || typeof sample.text !== 'string') {
      fail(where, `samples[${i}] must be an object with a string text, got ${isObject(sample) ? `text ${show(sample.text)}` : show(sample)}`);
    }
  });

  const values = samples.map(() => new Array<number>(specs.length).fill(0));
  const failures: Record<string, RewardFailures> = Object.fromEntries(specs.map((spec) => [spec.name, { thrown: 0, invalid: 0, timedOut: 0 }]));
  const calls = samples.length * specs.length;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < calls) {
      const call = next++;
      const index = Math.floor(call / specs.length);
      const r = call % specs.length;
      const outcome = await callReward(specs[r]!, samples[index]!, index, timeoutMs);
      if ('value' in outcome) {
        values[index]![r] = outcome.value;
      } else {
        failures[specs[r]!.name]![outcome.failure]++;
        onError?.(specs[r]!.name, index, outcome.error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, calls) }, worker));

  const scores = values.map((row) => ({
    total: row.reduce((sum, value, r) => sum + specs[r]!.weight * value, 0),
    components: Object.fromEntries(specs.map((spec, r) => [spec.name, row[r]!])),
  }));
  return { scores, failures };
}

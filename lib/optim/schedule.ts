// Learning-rate schedules: the rate of optimizer step s (s = 0 for the first step) as a pure
// function of s, so a resumed run only needs the step count. Warmup is linear from
// lr·(1/(warmupSteps+1)) up to lr over the first warmupSteps steps (Hugging Face's
// get_*_schedule_with_warmup shape, shifted so step 0 never has rate 0); after warmup:
//   constant: lr
//   linear:   lr · (1 − p) + minLr · p                 p = (s − warmup) / (total − warmup) ∈ [0, 1]
//   cosine:   minLr + (lr − minLr) · ½(1 + cos(π·p))
import * as is from '../core/validate.js';

export type ScheduleKind = 'constant' | 'linear' | 'cosine';

export interface ScheduleOptions {
  kind?: ScheduleKind;
  /** Peak learning rate (finite, ≥ 0). */
  lr: number;
  /** Steps of linear warmup. Default 0. */
  warmupSteps?: number;
  /** Steps the decay spans (needed by linear and cosine): after it the rate stays at minLr. */
  totalSteps?: number;
  /** Final rate of linear/cosine decay. Default 0. */
  minLr?: number;
}

/** The rate of each step. */
export type LearningRateSchedule = (step: number) => number;

export function learningRateSchedule(options: ScheduleOptions, where = 'learningRateSchedule'): LearningRateSchedule {
  const o = is.options(options, ['kind', 'lr', 'warmupSteps', 'totalSteps', 'minLr'] as const, where);
  const kind = is.optionalOneOf(o.kind, 'kind', where, ['constant', 'linear', 'cosine'] as const, 'constant');
  const lr = is.number(o.lr, 'lr', where, { min: 0 });
  const warmup = is.optionalNumber(o.warmupSteps, 'warmupSteps', where, 0, { integer: true, min: 0 });
  const minLr = is.optionalNumber(o.minLr, 'minLr', where, 0, { min: 0, max: lr });
  let total = 0;
  if (kind !== 'constant') {
    total = is.number(o.totalSteps, 'totalSteps', where, { integer: true, min: 1 });
    if (total <= warmup) is.fail(where, `totalSteps (${total}) must exceed warmupSteps (${warmup}) for a '${kind}' schedule`);
  }
  return (step: number) => {
    if (step < warmup) return (lr * (step + 1)) / (warmup + 1);
    if (kind === 'constant') return lr;
    const p = Math.min(1, (step - warmup) / (total - warmup));
    return kind === 'linear' ? lr * (1 - p) + minLr * p : minLr + (lr - minLr) * 0.5 * (1 + Math.cos(Math.PI * p));
  };
}

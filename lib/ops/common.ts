// Helpers shared by the op wrappers.
import { R1VError } from '../core/errors.js';
import type { NativeTensor } from '../core/native.js';
import { Tensor } from '../core/tensor.js';

/** value as a Tensor, or R1VError('ARGUMENT') naming it. */
export function tensorArg<T extends Tensor>(value: unknown, name: string): T {
  if (!(value instanceof Tensor)) throw new R1VError('ARGUMENT', `${name} must be a Tensor`);
  return value as T;
}

/** An optional Tensor argument (undefined passes through). */
export function optionalTensorArg<T extends Tensor>(value: unknown, name: string): T | undefined {
  return value === undefined ? undefined : tensorArg<T>(value, name);
}

/** Wraps a native result handle as a Tensor of the same engine as `like`. */
export function wrap<T extends Tensor>(like: Tensor, handle: NativeTensor): T {
  return new Tensor(like.engine, handle) as T;
}

/** An options object (or undefined) whose keys are all known; a typo is an R1VError. */
export function checkOptions<T extends object>(options: T | undefined, known: readonly string[], fn: string): T | undefined {
  if (options === undefined) return undefined;
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new R1VError('ARGUMENT', `${fn}: options must be an object`);
  }
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) throw new R1VError('ARGUMENT', `${fn}: unknown option '${key}' (known: ${known.join(', ')})`);
  }
  return options;
}

// Helpers shared by the op wrappers.
import { R1VError } from '../core/errors.js';
import { isObject } from '../core/validate.js';
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

/**
 * An options object (or undefined), passed on to the native op as given: the binding checks its
 * keys (an unknown one, a typo, is R1VError('ARGUMENT') naming it), so the known keys of an op are
 * listed once, beside the code that reads them (bindings/op_<family>.cpp).
 */
export function optionsArg<T extends object>(options: T | undefined, fn: string): T | undefined {
  if (options === undefined) return undefined;
  if (!isObject(options)) throw new R1VError('ARGUMENT', `${fn}: options must be an object`);
  return options;
}

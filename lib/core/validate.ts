// One way to check what callers pass (in the manner of sharp's is.js): option objects with
// known keys, numbers in ranges, enums, seeds, typed arrays. Every failure is one
// R1VError('ARGUMENT') whose message starts with where it happened (the function, or a
// config path) and names the key, what it must be and what it got.
import { R1VError, type R1VErrorCode } from './errors.js';

/** Throws R1VError(code) with `where: message`. */
export function fail(where: string, message: string, code: R1VErrorCode = 'ARGUMENT'): never {
  throw new R1VError(code, `${where}: ${message}`);
}

/** A short rendering of a bad value for an error message. */
export function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === undefined || value === null) return String(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'function') return 'a function';
  if (Array.isArray(value)) return `an array of ${value.length}`;
  return (value as object).constructor?.name ?? typeof value;
}

/** Whether value is a plain object (not null, not an array). */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * An options object (undefined → {}) whose keys are all in `known`: an unknown key, a typo, is
 * R1VError('ARGUMENT') naming it and listing the known ones. `noun` names what the keys are
 * ('option', or 'field' for a record argument).
 */
export function options<K extends string>(value: unknown, known: readonly K[], where: string, noun = 'option'): { [P in K]?: unknown } {
  if (value === undefined) return {};
  if (!isObject(value)) fail(where, `${noun === 'option' ? 'options' : `${noun}s`} must be an object, got ${show(value)}`);
  for (const key of Object.keys(value)) {
    if (!(known as readonly string[]).includes(key)) fail(where, `unknown ${noun} '${key}' (known: ${known.join(', ')})`);
  }
  return value as { [P in K]?: unknown };
}

export interface NumberRule {
  /** value ≥ min. */
  min?: number;
  /** value ≤ max. */
  max?: number;
  /** value > above. */
  above?: number;
  /** value < below. */
  below?: number;
  /** A (safe) integer. */
  integer?: boolean;
}

function describe(rule: NumberRule): string {
  const parts: string[] = [rule.integer ? 'an integer' : 'a finite number'];
  if (rule.min !== undefined) parts.push(`≥ ${rule.min}`);
  if (rule.above !== undefined) parts.push(`> ${rule.above}`);
  if (rule.max !== undefined) parts.push(`≤ ${rule.max}`);
  if (rule.below !== undefined) parts.push(`< ${rule.below}`);
  return parts.join(' ');
}

/** Whether value is a finite number satisfying rule. */
export function isNumber(value: unknown, rule: NumberRule = {}): value is number {
  if (typeof value !== 'number' || !Number.isFinite(value)) return false;
  if (rule.integer && !Number.isSafeInteger(value)) return false;
  if (rule.min !== undefined && !(value >= rule.min)) return false;
  if (rule.max !== undefined && !(value <= rule.max)) return false;
  if (rule.above !== undefined && !(value > rule.above)) return false;
  if (rule.below !== undefined && !(value < rule.below)) return false;
  return true;
}

/** value as a number satisfying rule, else R1VError naming `name`. */
export function number(value: unknown, name: string, where: string, rule: NumberRule = {}): number {
  if (!isNumber(value, rule)) fail(where, `${name} must be ${describe(rule)}, got ${show(value)}`);
  return value;
}

/** Like number, with a default for undefined. */
export function optionalNumber(value: unknown, name: string, where: string, fallback: number, rule: NumberRule = {}): number {
  return value === undefined ? fallback : number(value, name, where, rule);
}

/** A non-negative safe integer (seeds, counts). */
export function seed(value: unknown, name: string, where: string): number {
  return number(value, name, where, { integer: true, min: 0 });
}

export function boolean(value: unknown, name: string, where: string): boolean {
  if (typeof value !== 'boolean') fail(where, `${name} must be a boolean, got ${show(value)}`);
  return value;
}

export function optionalBoolean(value: unknown, name: string, where: string, fallback: boolean): boolean {
  return value === undefined ? fallback : boolean(value, name, where);
}

/** One of the allowed strings. */
export function oneOf<T extends string>(value: unknown, name: string, where: string, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    fail(where, `${name} must be one of ${allowed.map((a) => `'${a}'`).join(', ')}, got ${show(value)}`);
  }
  return value as T;
}

export function optionalOneOf<T extends string>(value: unknown, name: string, where: string, allowed: readonly T[], fallback: T): T {
  return value === undefined ? fallback : oneOf(value, name, where, allowed);
}

export function func<F extends (...args: never[]) => unknown>(value: unknown, name: string, where: string): F {
  if (typeof value !== 'function') fail(where, `${name} must be a function, got ${show(value)}`);
  return value as F;
}

export function string(value: unknown, name: string, where: string): string {
  if (typeof value !== 'string') fail(where, `${name} must be a string, got ${show(value)}`);
  return value;
}

/** A Float32Array (of `length` entries when given). */
export function float32Array(value: unknown, name: string, where: string, length?: number): Float32Array {
  if (!(value instanceof Float32Array)) fail(where, `${name} must be a Float32Array, got ${show(value)}`);
  if (length !== undefined && value.length !== length) fail(where, `${name} has ${value.length} entries, need ${length}`, 'SHAPE');
  return value;
}

/** An Int32Array (of `length` entries when given). */
export function int32Array(value: unknown, name: string, where: string, length?: number): Int32Array {
  if (!(value instanceof Int32Array)) fail(where, `${name} must be an Int32Array, got ${show(value)}`);
  if (length !== undefined && value.length !== length) fail(where, `${name} has ${value.length} entries, need ${length}`, 'SHAPE');
  return value;
}

/**
 * Cumulative sequence offsets [B + 1]: an Int32Array starting at 0, non-decreasing, ending at
 * `total` when given.
 */
export function cuSeqlens(value: unknown, name: string, where: string, total?: number): Int32Array {
  const cu = int32Array(value, name, where);
  if (cu.length < 1 || cu[0] !== 0) fail(where, `${name} must start at 0`, 'SHAPE');
  for (let i = 1; i < cu.length; i++) {
    if (cu[i]! < cu[i - 1]!) fail(where, `${name} decreases at [${i}] (${cu[i - 1]} → ${cu[i]})`, 'SHAPE');
  }
  if (total !== undefined && cu[cu.length - 1] !== total) fail(where, `${name} must end at ${total}, got ${cu[cu.length - 1]}`, 'SHAPE');
  return cu;
}

/**
 * A number array (an Array or a non-BigInt typed array: Float32Array, Float64Array, ...) whose
 * entries are all finite numbers, of `length` entries when given (else R1VError('SHAPE')).
 */
export function finiteNumbers(value: unknown, name: string, where: string, length?: number): ArrayLike<number> {
  const typed = ArrayBuffer.isView(value) && !(value instanceof DataView)
    && !(value instanceof BigInt64Array) && !(value instanceof BigUint64Array);
  if (!typed && !Array.isArray(value)) fail(where, `${name} must be an array of numbers or a Float32Array/Float64Array, got ${show(value)}`);
  const values = value as ArrayLike<unknown>;
  if (length !== undefined && values.length !== length) fail(where, `${name} has ${values.length} entries, need ${length}`, 'SHAPE');
  for (let i = 0; i < values.length; i++) {
    if (!isNumber(values[i])) fail(where, `${name}[${i}] must be a finite number, got ${show(values[i])}`);
  }
  return values as ArrayLike<number>;
}

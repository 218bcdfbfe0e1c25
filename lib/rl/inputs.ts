// Reading the inputs of the RL functions: per-token (or per-sample) number arrays that must all
// have one length, and the cuSeqlens that splits them into sequences.
//
// Conventions of lib/rl: inputs are ArrayLike<number> (Float32Array, Float64Array or number[],
// every entry finite) and are read into float64 arithmetic; per-token outputs are Float32Array.
// Sequences are packed back to back: sequence b owns tokens [cuSeqlens[b], cuSeqlens[b + 1]).
// Arrays whose lengths disagree are R1VError('SHAPE') naming both arrays; everything else that is
// wrong with an input is R1VError('ARGUMENT') naming it.
import { cuSeqlens as readCuSeqlens, fail, finiteNumbers } from '../core/validate.js';

/**
 * The arrays of `required` and of `optional` (name → value; an undefined optional one is left
 * out), each checked by validate.finiteNumbers, all of one length (else SHAPE naming the first
 * array and the one that differs).
 */
export function sameLengthArrays<R extends string, O extends string = never>(
  where: string, required: Record<R, unknown>, optional?: Record<O, unknown>,
): { [P in R]: ArrayLike<number> } & { [P in O]?: ArrayLike<number> } {
  const out: Record<string, ArrayLike<number>> = {};
  let first: { name: string; length: number } | undefined;
  for (const [name, value] of [...Object.entries(required), ...Object.entries(optional ?? {})]) {
    if (value === undefined && !(name in required)) continue;
    const values = finiteNumbers(value, name, where);
    if (first === undefined) first = { name, length: values.length };
    else if (values.length !== first.length) {
      fail(where, `${name} has ${values.length} entries but ${first.name} has ${first.length}`, 'SHAPE');
    }
    out[name] = values;
  }
  return out as { [P in R]: ArrayLike<number> } & { [P in O]?: ArrayLike<number> };
}

/** cuSeqlens as an Int32Array [B + 1] from 0, non-decreasing, ending at `tokens` when given (else SHAPE). */
export function sequenceOffsets(value: unknown, tokens: number | undefined, where: string): Int32Array {
  return readCuSeqlens(value, 'cuSeqlens', where, tokens);
}

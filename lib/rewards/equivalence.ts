// Whether an extracted answer is equivalent to the ground truth (rules in docs/rewards.md).
//
// Both sides are cleaned (latex.ts), a boxed ground truth is unboxed, and then:
// - a ground truth that is one decorated letter (A, (A), A., \text{A}, Option A) is a multiple-
//   choice key: the answer matches when it opens with that letter as a choice, any case;
// - `x = 5` is read as 5 when the ground truth has no `=`;
// - lists (top-level commas) match item by item: in order inside () or [] (tuples, intervals,
//   whose bracket characters must agree), as multisets when bare or inside \{ \};
// - scalars match when their text keys agree (whitespace, case and x^{2}/x^2 aside), or when both
//   are arithmetic (arithmetic.ts, units after the number dropped) with equal values; a
//   percentage on one side only matches the other at face value or as a fraction (5% ~ 5 ~ 0.05).
// Every function is total over strings: malformed input compares as text, never throws.
import { lastBoxed } from './answer.js';
import { evaluateArithmetic, percentOf, valuesEqual, type ArithmeticValue } from './arithmetic.js';
import {
  choiceLetter, choiceOnly, cleanAnswer, MAX_STRUCTURED_LENGTH, splitList, stripAssignment, stripPercent,
  stripUnits, textKey, translate,
} from './latex.js';
import { fail, number, options, show } from '../core/validate.js';

/** Default relative tolerance of numeric comparisons that involve an inexact value (a root, pi). */
export const DEFAULT_RELATIVE_TOLERANCE = 1e-6;

export interface EquivalenceOptions {
  /**
   * Relative tolerance when either value is inexact (irrational roots, pi, huge literals);
   * rational values always compare exactly. In [0, 1). Default 1e-6.
   */
  relativeTolerance?: number;
}

interface ScalarForm {
  kind: 'scalar';
  key: string;
  percent: boolean;
  value: ArithmeticValue | null;
}

interface ListForm {
  kind: 'list';
  brackets: string;
  items: Form[];
}

type Form = ScalarForm | ListForm;

function scalarForm(s: string): ScalarForm {
  const { text, percent } = stripPercent(s);
  const expression = text.length > MAX_STRUCTURED_LENGTH ? null : translate(stripUnits(text));
  return { kind: 'scalar', key: textKey(text), percent, value: expression === null ? null : evaluateArithmetic(expression) };
}

function formOf(s: string): Form {
  const list = s.length > MAX_STRUCTURED_LENGTH ? null : splitList(s);
  if (list === null) return scalarForm(s);
  return { kind: 'list', brackets: list.brackets, items: list.items.map(formOf) };
}

function scalarsEqual(a: ScalarForm, b: ScalarForm, tolerance: number): boolean {
  if (a.key === '' || b.key === '') return false;
  if (a.key === b.key) return true;
  if (a.value === null || b.value === null) return false;
  if (valuesEqual(a.value, b.value, tolerance)) return true;
  if (a.percent === b.percent) return false;
  return a.percent ? valuesEqual(percentOf(a.value), b.value, tolerance) : valuesEqual(a.value, percentOf(b.value), tolerance);
}

/** Whether the items match as multisets: each of a pairs with a distinct equal item of b. */
function multisetsEqual(a: readonly Form[], b: readonly Form[], tolerance: number): boolean {
  const used = new Array<boolean>(b.length).fill(false);
  return a.every((item) => {
    const j = b.findIndex((other, k) => !used[k] && formsEqual(item, other, tolerance));
    if (j < 0) return false;
    used[j] = true;
    return true;
  });
}

function formsEqual(a: Form, b: Form, tolerance: number): boolean {
  if (a.kind === 'scalar' || b.kind === 'scalar') {
    return a.kind === 'scalar' && b.kind === 'scalar' && scalarsEqual(a, b, tolerance);
  }
  if (a.brackets !== b.brackets || a.items.length !== b.items.length) return false;
  if (a.brackets === '' || a.brackets === '{}') return multisetsEqual(a.items, b.items, tolerance);
  return a.items.every((item, i) => formsEqual(item, b.items[i]!, tolerance));
}

/** answersEquivalent with a checked tolerance. */
export function equivalentWith(answer: string, truth: string, relativeTolerance: number): boolean {
  const cleanTruth = cleanAnswer(lastBoxed(truth) ?? truth);
  let cleanAnswerText = cleanAnswer(lastBoxed(answer) ?? answer);
  const key = choiceOnly(cleanTruth);
  if (key !== null) return choiceLetter(cleanAnswerText) === key;
  if (!cleanTruth.includes('=')) cleanAnswerText = stripAssignment(cleanAnswerText);
  return formsEqual(formOf(cleanAnswerText), formOf(cleanTruth), relativeTolerance);
}

/** relativeTolerance option, checked. */
export function toleranceOption(value: unknown, where: string): number {
  return value === undefined ? DEFAULT_RELATIVE_TOLERANCE : number(value, 'relativeTolerance', where, { min: 0, below: 1 });
}

/** Whether answer is equivalent to truth under the rules at the top of this file (never throws on strings). */
export function answersEquivalent(answer: string, truth: string, equivalenceOptions?: EquivalenceOptions): boolean {
  const where = 'answersEquivalent';
  if (typeof answer !== 'string') fail(where, `answer must be a string, got ${show(answer)}`);
  if (typeof truth !== 'string') fail(where, `truth must be a string, got ${show(truth)}`);
  const o = options(equivalenceOptions, ['relativeTolerance'], where);
  return equivalentWith(answer, truth, toleranceOption(o.relativeTolerance, where));
}

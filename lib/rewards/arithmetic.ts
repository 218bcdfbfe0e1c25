// The value of an arithmetic expression, read with mathjs's parser and computed exactly where
// that is possible.
//
// The text is only parsed (math.parse builds a syntax tree; nothing is compiled or evaluated by
// mathjs), and the tree is walked here over a whitelist: number literals, parentheses, + − × ÷ ^
// (explicit or implicit multiplication), unary ±, sqrt(x), nthRoot(x, n) and the constant pi.
// Any other node (symbols, units, functions, matrices, assignments, ...) makes the expression
// "not arithmetic" (null), and the caller compares strings instead.
//
// A value carries an exact rational (a mathjs Fraction: BigInt numerator/denominator) while
// every step is rational — literals (the parser is configured for BigNumber so that 0.1, 1e3 and
// 20-digit integers arrive exactly), + − × ÷, integer powers and perfect roots — and always a
// float64 approximation. Exact work is bounded (exponents ≤ 1024, numerator and denominator
// ≤ 2048 bits together) so that `10^10^10` costs nothing: past the bounds a value is
// approximate only.
import { createRequire } from 'node:module';

import type { BigNumber, Fraction, MathJsInstance, MathNode } from 'mathjs';

// mathjs is loaded on the first expression, not when r1v is imported: its instance holds ~30 MB
// of heap, which makes every garbage collection of a process that never scores an answer slower.
let instance: MathJsInstance | undefined;
function mathjs(): MathJsInstance {
  if (!instance) {
    const m = createRequire(import.meta.url)('mathjs') as typeof import('mathjs');
    // The factory maps are always defined; mathjs's typings mark them optional.
    instance = m.create({ parseDependencies: m.parseDependencies!, fractionDependencies: m.fractionDependencies! }, { number: 'BigNumber' });
  }
  return instance;
}

function isBigNumber(x: unknown): x is BigNumber {
  return typeof x === 'object' && x !== null && (x as { isBigNumber?: unknown }).isBigNumber === true;
}

/** An arithmetic value: exact when every step was rational, always approximated in float64. */
export interface ArithmeticValue {
  exact: Fraction | null;
  approx: number;
}

const MAX_EXACT_BITS = 2048;
const MAX_EXACT_EXPONENT = 1024;
const MAX_ROOT_DEGREE = 64;
const MAX_LITERAL_EXPONENT = 300;

function bitLength(x: bigint): number {
  return (x < 0n ? -x : x).toString(16).length * 4;
}

/** A value; an exact part past MAX_EXACT_BITS (numerator and denominator) is dropped. */
function value(exact: Fraction | null, approx: number): ArithmeticValue {
  const small = exact !== null && bitLength(exact.n) + bitLength(exact.d) <= MAX_EXACT_BITS;
  return { exact: small ? exact : null, approx };
}

function literal(node: MathNode): ArithmeticValue | null {
  const d = (node as MathNode & { value: unknown }).value;
  if (!isBigNumber(d) || !d.isFinite()) return null;
  const exact = Math.abs(d.e) <= MAX_LITERAL_EXPONENT ? mathjs().fraction(d.toFixed()) : null;
  return value(exact, d.toNumber());
}

/** The integer k-th root of v ≥ 0 when v is a perfect k-th power (below 2^53 for the root), else null. */
function integerRoot(v: bigint, k: number): bigint | null {
  const guess = Math.round(Number(v) ** (1 / k));
  if (!Number.isSafeInteger(guess)) return null;
  for (const r of [BigInt(guess), BigInt(guess) - 1n, BigInt(guess) + 1n]) {
    if (r >= 0n && r ** BigInt(k) === v) return r;
  }
  return null;
}

/** The exact real k-th root of x (odd k for negative x), or null when it is not rational. */
function exactRoot(x: Fraction, k: number): Fraction | null {
  if (k === 1) return x;
  if (x.s < 0n && k % 2 === 0) return null;
  const n = integerRoot(x.n, k);
  const d = n === null ? null : integerRoot(x.d, k);
  if (n === null || d === null) return null;
  const root = mathjs().fraction(n, d);
  return x.s < 0n ? root.neg() : root;
}

/** The real k-th root in float64 (odd roots of negative numbers are negative). */
function approxRoot(x: number, k: number): number {
  return x < 0 && k % 2 === 1 ? -((-x) ** (1 / k)) : x ** (1 / k);
}

function root(x: ArithmeticValue, k: number): ArithmeticValue {
  const exact = x.exact === null ? null : exactRoot(x.exact, k);
  return value(exact, exact === null ? approxRoot(x.approx, k) : exact.valueOf());
}

function power(base: ArithmeticValue, exponent: ArithmeticValue): ArithmeticValue {
  const e = exponent.exact;
  if (base.exact !== null && e !== null && e.d <= BigInt(MAX_ROOT_DEGREE) && e.n <= BigInt(MAX_EXACT_EXPONENT)) {
    const rooted = exactRoot(base.exact, Number(e.d));
    const p = Number(e.n);
    if (rooted !== null && !(rooted.n === 0n && e.s < 0n) && bitLength(rooted.n) * p <= MAX_EXACT_BITS && bitLength(rooted.d) * p <= MAX_EXACT_BITS) {
      const exact = rooted.pow(e.s < 0n ? -p : p);
      return value(exact, exact.valueOf());
    }
  }
  if (base.approx < 0 && e !== null && e.d % 2n === 1n) {
    // A negative base with an odd-denominator exponent has a real value: (−8)^(1/3) = −2.
    const magnitude = approxRoot(base.approx, Number(e.d)) ** (Number(e.n) * Number(e.s));
    return value(null, magnitude);
  }
  return value(null, base.approx ** exponent.approx);
}

function binary(fn: string, a: ArithmeticValue, b: ArithmeticValue): ArithmeticValue | null {
  const exact = a.exact !== null && b.exact !== null;
  switch (fn) {
    case 'add': return value(exact ? a.exact!.add(b.exact!) : null, a.approx + b.approx);
    case 'subtract': return value(exact ? a.exact!.sub(b.exact!) : null, a.approx - b.approx);
    case 'multiply': return value(exact ? a.exact!.mul(b.exact!) : null, a.approx * b.approx);
    case 'divide': return value(exact && b.exact!.n !== 0n ? a.exact!.div(b.exact!) : null, a.approx / b.approx);
    case 'pow': return power(a, b);
    default: return null;
  }
}

function evaluateNode(node: MathNode): ArithmeticValue | null {
  switch (node.type) {
    case 'ConstantNode':
      return literal(node);
    case 'ParenthesisNode':
      return evaluateNode((node as MathNode & { content: MathNode }).content);
    case 'SymbolNode':
      return (node as MathNode & { name: string }).name === 'pi' ? value(null, Math.PI) : null;
    case 'OperatorNode':
    case 'FunctionNode': {
      const { fn, args } = node as MathNode & { fn: string | { type: string; name: string }; args: MathNode[] };
      const name = typeof fn === 'string' ? fn : fn.type === 'SymbolNode' ? fn.name : '';
      const operands: ArithmeticValue[] = [];
      for (const arg of args) {
        const v = evaluateNode(arg);
        if (v === null) return null;
        operands.push(v);
      }
      const [a, b] = operands;
      if (operands.length === 1) {
        if (name === 'unaryMinus') return value(a!.exact?.neg() ?? null, -a!.approx);
        if (name === 'unaryPlus') return a!;
        if (name === 'sqrt') return root(a!, 2);
        return null;
      }
      if (operands.length !== 2) return null;
      if (name === 'nthRoot') {
        const k = b!.exact;
        return k !== null && k.d === 1n && k.s > 0n && k.n >= 1n && k.n <= BigInt(MAX_ROOT_DEGREE) ? root(a!, Number(k.n)) : null;
      }
      return node.type === 'OperatorNode' ? binary(name, a!, b!) : null;
    }
    default:
      return null;
  }
}

/**
 * The value of an arithmetic expression in mathjs syntax, or null when the text does not parse,
 * uses anything outside the whitelist, or has no finite real value (1/0, sqrt(−1)).
 */
export function evaluateArithmetic(expression: string): ArithmeticValue | null {
  let tree: MathNode;
  try {
    tree = mathjs().parse(expression);
  } catch {
    return null; // not an expression mathjs can read: the caller compares text
  }
  const v = evaluateNode(tree);
  if (v === null || (v.exact === null && !Number.isFinite(v.approx))) return null;
  return v;
}

/**
 * Whether two values are equal: exactly when both are exact (so 1000000 ≠ 1000001 and
 * 0.333 ≠ 1/3), else within a relative tolerance of the larger magnitude.
 */
export function valuesEqual(a: ArithmeticValue, b: ArithmeticValue, relativeTolerance: number): boolean {
  if (a.exact !== null && b.exact !== null) return a.exact.equals(b.exact);
  if (!Number.isFinite(a.approx) || !Number.isFinite(b.approx)) return false;
  return Math.abs(a.approx - b.approx) <= relativeTolerance * Math.max(Math.abs(a.approx), Math.abs(b.approx));
}

/** x / 100 (the value of a percentage). */
export function percentOf(x: ArithmeticValue): ArithmeticValue {
  return value(x.exact?.div(100) ?? null, x.approx / 100);
}

// The accuracy reward and answer equivalence: a table of tricky answers with the score each must
// get, then random rationals, integers, roots and percentages whose equality is decided by an
// independent reference (BigInt cross-multiplication, float64 relative error).
import assert from 'node:assert/strict';

import { accuracyReward, answersEquivalent, type RewardSample } from '../lib/rewards/index.js';
import { expectR1VError, rng } from './helpers.js';

function sample(text: string, answer: unknown): RewardSample {
  return { text, row: { answer }, step: 0 };
}

const accuracy = accuracyReward();

function accuracyOf(text: string, truth: unknown): number {
  return accuracy.fn(sample(text, truth)) as number;
}

// [answer as written, ground truth, equivalent?]
const ANSWER_TABLE: readonly [string, string, boolean][] = [
  // numbers, decimals and fractions
  ['42', '42', true], ['-7', '-7', true], ['−7', '-7', true], ['7', '-7', false], ['-(2)', '-2', true], ['+5', '5', true],
  ['0.5', '.5', true], ['0.50', '0.5', true], ['5.', '5', true], ['5.0', '5', true],
  ['\\frac{1}{2}', '0.5', true], ['\\dfrac{1}{2}', '1/2', true], ['\\tfrac12', '0.5', true], ['\\frac{2}{4}', '\\frac12', true],
  ['\\frac{\\frac{1}{2}}{3}', '1/6', true], ['-\\frac{3}{4}', '-0.75', true], ['\\frac{-3}{4}', '-\\frac{3}{4}', true],
  ['2\\frac{1}{3}', '\\frac{7}{3}', true],
  // expressions
  ['2+3', '5', true], ['2^3', '8', true], ['2^{10}', '1024', true], ['\\sqrt{16}', '4', true], ['\\sqrt[3]{-8}', '-2', true],
  ['3\\times 4', '12', true], ['3 \\cdot 4', '12', true], ['12 \\div 4', '3', true], ['2(3+1)', '8', true], ['10^{-3}', '0.001', true],
  // scientific notation
  ['1e3', '1000', true], ['1.5E3', '1500', true], ['1.5 \\times 10^{3}', '1500', true], ['2.5e-3', '0.0025', true],
  // thousands separators and lists
  ['1,000', '1000', true], ['1{,}000', '1000', true], ['1\\,000', '1000', true], ['12,345.5', '12345.5', true], ['-1,000,000', '-1000000', true],
  ['1,2', '12', false], ['0,500', '500', false], ['1,2345', '12345', false],
  ['1, 2', '2, 1', true], ['(1, 2)', '(1,2)', true], ['(1, 2)', '(2, 1)', false], ['(1, 2)', '1, 2', false], ['[1, 3)', '(1, 3]', false],
  ['\\{3, 1\\}', '\\{1, 3\\}', true], ['\\frac{1}{2}, 3', '3, 0.5', true], ['3, 5', '3', false], ['1, 2, 3', '1, 2', false],
  // units, currency, percent, degrees, wrappers
  ['5 cm', '5', true], ['5\\text{ cm}', '5', true], ['5 \\mathrm{cm}^2', '5', true], ['12 square units', '12', true], ['\\$5', '5', true],
  ['5 cm', '6', false], ['\\$5.00', '5', true],
  ['5\\%', '5', true], ['5%', '0.05', true], ['0.05', '5\\%', true], ['5%', '0.05%', false], ['5%', '500', false],
  ['90^\\circ', '90', true], ['90^{\\circ}', '90°', true], ['$\\frac{3}{4}$', '0.75', true], ['\\(7\\)', '7', true],
  ['\\left( 3 \\right)', '3', true], ['\\left(1, 2\\right)', '(1,2)', true], ['x = 5', '5', true], ['x = 5', 'x=5', true],
  // multiple choice
  ['A', 'A', true], ['(a)', 'A', true], ['A.', 'A', true], ['\\text{A}', 'A', true], ['Option A', 'A', true], ['(B) 42', 'B', true],
  ['B. The second one', '(B)', true], ['b', 'B', true], ['B', 'A', false], ['Another', 'A', false], ['42', 'C', false],
  // tolerance: rational values compare exactly, irrational ones within 1e-6 relative
  ['0.333', '\\frac{1}{3}', false], ['0.3333333', '1/3', false], ['1000001', '1000000', false],
  ['12345678901234567891', '12345678901234567890', false], ['12345678901234567890', '1.2345678901234567890e19', true],
  ['1.4142136', '\\sqrt{2}', true], ['1.414', '\\sqrt{2}', false], ['\\frac{\\sqrt{3}}{2}', '0.8660254', true], ['2\\pi', '6.2831853', true],
  // text and symbols compare as normalised strings
  ['x^{2}+1', 'x^2 + 1', true], ['x+1', '1+x', false], ['\\infty', '\\infty', true], ['Yes', 'yes', true], ['(-\\infty, 2]', '(-\\infty,2]', true],
  // nothing to compare
  ['', '0', false], ['  ', '', false], ['\\boxed{5}', '5', true], ['5', '\\boxed{5}', true],
];

// [full response, ground truth, expected accuracy]
const RESPONSE_TABLE: readonly [string, string | number, number][] = [
  ['<think>2+2 is 4</think> The answer is \\boxed{4}.', '4', 1],
  ['<think>…</think> so $\\boxed{\\frac{1}{2}}$', 0.5, 1],
  ['<think>…</think> \\boxed{\\left\\{1, 2\\right\\}}', '\\{2, 1\\}', 1],
  ['<think>try \\boxed{3}</think> then \\boxed{5}', '5', 1],
  ['<think>try \\boxed{3}</think> then \\boxed{5}', '3', 0],
  ['<think>\\boxed{3}</think> I am not sure.', '3', 0],
  ['<think>\\boxed{3}</think>', '3', 0],
  ['<think>\\boxed{3} and more reasoning, cut off', '3', 0],
  ['<think>x</think> first \\boxed{1}, finally \\boxed{2}', '2', 1],
  ['<think>x</think> first \\boxed{1}, finally \\boxed{2}', '1', 0],
  ['<think>x</think> \\boxed{}', '0', 0],
  ['<think>x</think> \\boxed{1} and \\boxed{2', '1', 0],
  ['<think>x</think> nothing boxed', '5', 0],
  ['<think>x</think> **Final Answer:** 1,000', 1000, 1],
  ['<think>x</think> Answer: (C)<|im_end|>', 'C', 1],
  ['<think>x</think> The answer is \\boxed 7', '7', 1],
  ['<think>x</think> \\fbox{-3}', '-3', 1],
  ['thinking opened by the prompt </think> \\boxed{12}', '12', 1],
  ['\\boxed{6}', '6', 1],
];

describe('rewards: answer equivalence and accuracy', () => {
  it('scores the table of tricky answers', () => {
    for (const [answer, truth, expected] of ANSWER_TABLE) {
      assert.equal(answersEquivalent(answer, truth), expected, `answersEquivalent(${JSON.stringify(answer)}, ${JSON.stringify(truth)})`);
      const response = `<think>work</think> The answer is $\\boxed{${answer}}$`;
      assert.equal(accuracyOf(response, truth), expected ? 1 : 0, response);
    }
  });

  it('scores the table of whole responses', () => {
    for (const [text, truth, expected] of RESPONSE_TABLE) assert.equal(accuracyOf(text, truth), expected, `${text} vs ${truth}`);
  });

  it('searches the reasoning too with searchAfterThink: false', () => {
    const text = '<think>\\boxed{3}</think>';
    assert.equal(accuracyReward({ searchAfterThink: false }).fn(sample(text, '3')), 1);
    assert.equal(accuracyOf(text, '3'), 0);
  });

  it('compares random rationals exactly, in every notation', () => {
    const next = rng('rewards rationals');
    const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1));
    const frac = (p: number, q: number) => (p < 0 ? `-\\frac{${-p}}{${q}}` : `\\frac{${p}}{${q}}`);
    for (let trial = 0; trial < 300; trial++) {
      const p = int(-999, 999) || 1;
      const q = int(1, 60);
      const k = int(2, 9);
      const truth = frac(p, q);
      const forms = [`${p}/${q}`, `\\dfrac{${p * k}}{${q * k}}`, `${p * k} \\div ${q * k}`, `(${p})/(${q})`];
      // Terminating decimals (q = 2^a 5^b), written digit by digit from BigInt arithmetic.
      if (factorsOf(q).every((f) => f === 2 || f === 5)) forms.push(exactDecimal(p, q));
      for (const form of forms) assert.equal(answersEquivalent(form, truth), true, `${form} vs ${truth}`);
      const p2 = int(-999, 999);
      const q2 = int(1, 60);
      const same = BigInt(p) * BigInt(q2) === BigInt(p2) * BigInt(q);
      assert.equal(answersEquivalent(`${p2}/${q2}`, truth), same, `${p2}/${q2} vs ${truth}`);
    }
  });

  it('compares random integers exactly, with or without thousands separators', () => {
    const next = rng('rewards integers');
    for (let trial = 0; trial < 300; trial++) {
      const n = BigInt(Math.floor(next() * 1e9)) * 1000n + BigInt(Math.floor(next() * 1000)) + 1000n;
      const grouped = n.toLocaleString('en-US');
      assert.match(grouped, /,/);
      assert.equal(answersEquivalent(grouped, n.toString()), true, grouped);
      assert.equal(answersEquivalent(`\\$${grouped}`, n.toString()), true, grouped);
      assert.equal(answersEquivalent(grouped, (n + 1n).toString()), false, `${grouped} vs n + 1`);
      assert.equal(answersEquivalent(`${n}`, `${n - 1n}`), false, `${n} vs n - 1`);
    }
  });

  it('compares irrational values within the relative tolerance', () => {
    const next = rng('rewards roots');
    for (let trial = 0; trial < 300; trial++) {
      let n = 2 + Math.floor(next() * 500);
      if (Number.isInteger(Math.sqrt(n))) n++;
      const root = Math.sqrt(n);
      for (const digits of [3, 5, 7, 9, 12]) {
        const written = root.toPrecision(digits);
        const expected = Math.abs(Number(written) - root) <= 1e-6 * Math.max(root, Math.abs(Number(written)));
        assert.equal(answersEquivalent(written, `\\sqrt{${n}}`), expected, `${written} vs sqrt(${n})`);
      }
      const loose = answersEquivalent(root.toPrecision(4), `\\sqrt{${n}}`, { relativeTolerance: 1e-3 });
      assert.equal(loose, true, `${root.toPrecision(4)} vs sqrt(${n}) at 1e-3`);
    }
  });

  it('matches a percentage against its fraction only when one side is a percentage', () => {
    const next = rng('rewards percent');
    for (let trial = 0; trial < 100; trial++) {
      const k = 1 + Math.floor(next() * 999);
      const fraction = exactDecimal(k, 100);
      assert.equal(answersEquivalent(`${k}\\%`, fraction), true, `${k}% vs ${fraction}`);
      assert.equal(answersEquivalent(fraction, `${k}%`), true, `${fraction} vs ${k}%`);
      assert.equal(answersEquivalent(`${k}%`, `${k}`), true);
      assert.equal(answersEquivalent(`${fraction}%`, `${k}%`), false, `${fraction}% vs ${k}%`);
    }
  });

  it('matches choice letters in any decoration and case', () => {
    const next = rng('rewards letters');
    for (let trial = 0; trial < 100; trial++) {
      const letter = String.fromCharCode(65 + Math.floor(next() * 26));
      const other = String.fromCharCode(65 + ((letter.charCodeAt(0) - 65 + 1 + Math.floor(next() * 25)) % 26));
      const truth = [letter, `(${letter})`, `${letter}.`, `\\text{${letter}}`][trial % 4]!;
      for (const form of [letter.toLowerCase(), `(${letter})`, `${letter}.`, `\\text{${letter}}`, `Option ${letter}`, `${letter}) 17`]) {
        assert.equal(answersEquivalent(form, truth), true, `${form} vs ${truth}`);
      }
      assert.equal(answersEquivalent(`(${other})`, truth), false, `${other} vs ${truth}`);
    }
  });

  it('treats a row without a usable answer as an error', () => {
    expectR1VError(() => accuracy.fn(sample('\\boxed{1}', undefined)), 'ARGUMENT', /accuracyReward: sample\.row\.answer/);
    expectR1VError(() => accuracy.fn(sample('\\boxed{1}', Number.NaN)), 'ARGUMENT', /row\.answer/);
    expectR1VError(() => accuracy.fn({ text: '\\boxed{1}', step: 0 } as unknown as RewardSample), 'ARGUMENT', /row/);
    expectR1VError(() => answersEquivalent(5 as unknown as string, '5'), 'ARGUMENT', /answersEquivalent: answer/);
    expectR1VError(() => answersEquivalent('5', '5', { relativeTolerance: -1 }), 'ARGUMENT', /relativeTolerance/);
    expectR1VError(() => accuracyReward({ tolerance: 1 } as never), 'ARGUMENT', /unknown option 'tolerance'/);
  });

  it('takes well under a millisecond per typical sample', () => {
    const cases = RESPONSE_TABLE.filter(([, truth]) => typeof truth === 'string');
    for (const [text, truth] of cases) accuracyOf(text, truth); // warm up
    const rounds = 50;
    const started = performance.now();
    for (let r = 0; r < rounds; r++) for (const [text, truth] of cases) accuracyOf(text, truth);
    const perSample = (performance.now() - started) / (rounds * cases.length);
    assert.ok(perSample < 1, `${perSample.toFixed(3)} ms per sample`);
  });
});

/** The prime factors of n (with repeats). */
function factorsOf(n: number): number[] {
  const factors: number[] = [];
  for (let f = 2; n > 1; f++) {
    while (n % f === 0) {
      factors.push(f);
      n /= f;
    }
  }
  return factors;
}

/** p/q as a finite decimal string (q = 2^a 5^b), by BigInt arithmetic. */
function exactDecimal(p: number, q: number): string {
  let scale = 0;
  while (10n ** BigInt(scale) % BigInt(q) !== 0n) scale++;
  const digits = (BigInt(Math.abs(p)) * (10n ** BigInt(scale) / BigInt(q))).toString().padStart(scale + 1, '0');
  const cut = digits.length - scale;
  const sign = p < 0 ? '-' : '';
  return scale === 0 ? `${sign}${digits}` : `${sign}${digits.slice(0, cut)}.${digits.slice(cut)}`;
}

// rl.advantages (grpo, rloo, reinforcePlusPlus, gae) and rl.expandToTokens against hand-computed
// cases and float64 references written per group / per sequence from the definitions.
import assert from 'node:assert/strict';

import { advantages, expandToTokens } from '../lib/rl/index.js';
import { assertAllClose, randomCuSeqlens, split, uniform } from './reference/rl.js';
import { expectR1VError, rng } from './helpers.js';

const F32 = 2e-6; // float32 outputs of O(1) values

/** Groups of groupSize consecutive entries. */
function groupsOf(values: ArrayLike<number>, groupSize: number): number[][] {
  return split(values, Int32Array.from({ length: values.length / groupSize + 1 }, (_, g) => g * groupSize));
}

const mean = (xs: number[]) => xs.reduce((a, x) => a + x, 0) / xs.length;
/** Unbiased variance as E[x²]·n/(n−1) − mean²·n/(n−1) (a different route from the library's). */
function unbiasedVariance(xs: number[]): number {
  const n = xs.length;
  return (xs.reduce((a, x) => a + x * x, 0) - n * mean(xs) ** 2) / (n - 1);
}

describe('rl.advantages.grpo', () => {
  it('hand case: (r − mean) / (unbiased std + eps), and Dr. GRPO without the std', () => {
    // Group 1: mean 0.5, unbiased var 1/3. Group 2: mean 0.6875, deviations ±…, unbiased var 0.140625, std 0.375.
    const rewards = [1, 0, 0, 1, 1, 1, 0.5, 0.25];
    const s1 = Math.sqrt(1 / 3) + 1e-6;
    const s2 = 0.375 + 1e-6;
    assertAllClose(advantages.grpo(rewards, { groupSize: 4 }),
      [0.5 / s1, -0.5 / s1, -0.5 / s1, 0.5 / s1, 0.3125 / s2, 0.3125 / s2, -0.1875 / s2, -0.4375 / s2], F32, 'grpo');
    assertAllClose(advantages.grpo(rewards, { groupSize: 4, scaleByStd: false }),
      [0.5, -0.5, -0.5, 0.5, 0.3125, 0.3125, -0.1875, -0.4375], F32, 'dr grpo');
    assertAllClose(advantages.grpo(Float32Array.from([2, 4]), { groupSize: 2, eps: 0.5 }),
      [-1 / (Math.SQRT2 + 0.5), 1 / (Math.SQRT2 + 0.5)], F32, 'eps');
  });

  it('a group of equal rewards gets exactly 0, a group of one follows verl (mean 0, std 1)', () => {
    const out = advantages.grpo([0.1, 0.1, 0.1, 0.7, 0.7, 0.7, 1, 0, 1], { groupSize: 3 });
    assert.deepEqual(Array.from(out.subarray(0, 6)), [0, 0, 0, 0, 0, 0]);
    assert.ok(out[6]! > 0 && out[7]! < 0);
    assertAllClose(advantages.grpo([0.3, -2], { groupSize: 1 }), [0.3 / (1 + 1e-6), -2 / (1 + 1e-6)], F32, 'one');
    assertAllClose(advantages.grpo([0.3, -2], { groupSize: 1, scaleByStd: false }), [0.3, -2], F32, 'one, dr');
  });

  it('random groups against a per-group float64 reference, with and without std scaling', () => {
    const next = rng('grpo');
    for (const groupSize of [2, 3, 8]) {
      const rewards = uniform(groupSize * 5, next, -2, 3);
      const eps = 1e-3 * next() + 1e-6;
      const scaled = groupsOf(rewards, groupSize).flatMap((g) => g.map((r) => (r - mean(g)) / (Math.sqrt(unbiasedVariance(g)) + eps)));
      const centred = groupsOf(rewards, groupSize).flatMap((g) => g.map((r) => r - mean(g)));
      assertAllClose(advantages.grpo(rewards, { groupSize, eps }), scaled, 1e-5, `grpo n=${groupSize}`);
      assertAllClose(advantages.grpo(Array.from(rewards), { groupSize, scaleByStd: false }), centred, F32, `dr n=${groupSize}`);
    }
  });
});

describe('rl.advantages.rloo', () => {
  it('hand case: r_i − mean of the others; a group of one keeps r', () => {
    assertAllClose(advantages.rloo([1, 0, 0, 3, 5, 5], { groupSize: 3 }), [1, -0.5, -0.5, -2, 1, 1], F32, 'rloo');
    assertAllClose(advantages.rloo([0.25, -1], { groupSize: 1 }), [0.25, -1], F32, 'one');
    assert.deepEqual(Array.from(advantages.rloo([0.1, 0.1, 0.1], { groupSize: 3 })), [0, 0, 0]);
  });

  it('random groups against an explicit leave-one-out loop', () => {
    const next = rng('rloo');
    for (const groupSize of [2, 4, 7]) {
      const rewards = uniform(groupSize * 4, next, -1, 1);
      const expected = groupsOf(rewards, groupSize).flatMap((g) =>
        g.map((r, i) => r - g.filter((_x, j) => j !== i).reduce((a, x) => a + x, 0) / (g.length - 1)));
      assertAllClose(advantages.rloo(rewards, { groupSize }), expected, F32, `rloo n=${groupSize}`);
    }
  });
});

describe('rl.advantages.reinforcePlusPlus', () => {
  it('hand case: batch-normalised with the unbiased variance + 1e-8; with groupSize, group means first', () => {
    const scale = Math.sqrt(5 / 3 + 1e-8);
    assertAllClose(advantages.reinforcePlusPlus([1, 2, 3, 4]), [-1.5 / scale, -0.5 / scale, 0.5 / scale, 1.5 / scale], F32, 'rf++');
    // x = r − group mean = [-0.5, 0.5, -1, 1]: mean 0, unbiased var (0.25 + 0.25 + 1 + 1)/3.
    const s = Math.sqrt(2.5 / 3 + 1e-8);
    assertAllClose(advantages.reinforcePlusPlus([1, 2, 3, 5], { groupSize: 2 }), [-0.5 / s, 0.5 / s, -1 / s, 1 / s], F32, 'baseline');
    assert.deepEqual(Array.from(advantages.reinforcePlusPlus([0.3, 0.3, 0.3])), [0, 0, 0]);
    assert.deepEqual(Array.from(advantages.reinforcePlusPlus([0.3])), [0]);
    assert.equal(advantages.reinforcePlusPlus([]).length, 0);
  });

  it('random batches against a float64 reference, with and without groups (groups of one: baseline 0)', () => {
    const next = rng('reinforce++');
    const whiten = (x: number[]) => x.map((v) => (v - mean(x)) / Math.sqrt(unbiasedVariance(x) + 1e-8));
    const rewards = uniform(24, next, -1, 2);
    assertAllClose(advantages.reinforcePlusPlus(rewards), whiten(Array.from(rewards)), 1e-5, 'batch');
    for (const groupSize of [1, 3, 6]) {
      const x = groupsOf(rewards, groupSize).flatMap((g) => g.map((r) => (groupSize === 1 ? r : r - mean(g))));
      assertAllClose(advantages.reinforcePlusPlus(rewards, { groupSize }), whiten(x), 1e-5, `baseline n=${groupSize}`);
    }
  });
});

describe('rl.advantages.gae', () => {
  it('hand case: γ = λ = 0.5 over sequences of lengths 3, 1 and 0', () => {
    // Sequence 1: δ = [1 + 0.5·1 − 0.5, 0 + 0.5·(−1) − 1, 2 + 0 + 1] = [1, −1.5, 3];
    // A2 = 3, A1 = −1.5 + 0.25·3 = −0.75, A0 = 1 + 0.25·(−0.75) = 0.8125. Sequence 2: δ = 2 − 0.5.
    const { advantages: a, returns } = advantages.gae([1, 0, 2, 2], [0.5, 1, -1, 0.5], Int32Array.from([0, 3, 4, 4]), { gamma: 0.5, lambda: 0.5 });
    assertAllClose(a, [0.8125, -0.75, 3, 1.5], F32, 'advantages');
    assertAllClose(returns, [1.3125, 0.25, 2, 2], F32, 'returns');
  });

  it('γ = λ = 1 by default: A_t = Σ_{u≥t} r_u − V_t', () => {
    const { advantages: a, returns } = advantages.gae([1, 2, 3], [0.5, -1, 2], Int32Array.from([0, 3]));
    assertAllClose(a, [6 - 0.5, 5 + 1, 3 - 2], F32, 'advantages');
    assertAllClose(returns, [6, 5, 3], F32, 'returns');
  });

  it('random sequences against the closed form A_t = Σ_l (γλ)^l δ_{t+l}', () => {
    const next = rng('gae');
    const cu = randomCuSeqlens(next, 6, 9);
    const tokens = cu[cu.length - 1]!;
    const rewards = uniform(tokens, next, -1, 1);
    const values = uniform(tokens, next, -1, 1);
    const gamma = 0.5 + 0.5 * next();
    const lambda = 0.3 + 0.7 * next();
    const expectedA: number[] = [];
    const expectedR: number[] = [];
    split(rewards, cu).forEach((r, b) => {
      const v = Array.from(values.subarray(cu[b], cu[b + 1]));
      const delta = r.map((x, t) => x + gamma * (v[t + 1] ?? 0) - v[t]!);
      delta.forEach((_d, t) => {
        const a = delta.slice(t).reduce((sum, d, l) => sum + (gamma * lambda) ** l * d, 0);
        expectedA.push(a);
        expectedR.push(a + v[t]!);
      });
    });
    const out = advantages.gae(rewards, values, cu, { gamma, lambda });
    assertAllClose(out.advantages, expectedA, 1e-5, 'advantages');
    assertAllClose(out.returns, expectedR, 1e-5, 'returns');
  });
});

describe('rl.expandToTokens', () => {
  it("repeats each sequence's scalar over its tokens", () => {
    const out = expandToTokens([0.5, -1, 2], Int32Array.from([0, 2, 2, 5]));
    assert.ok(out instanceof Float32Array);
    assert.deepEqual(Array.from(out), [0.5, 0.5, 2, 2, 2]);
  });
});

describe('rl.advantages: bad input', () => {
  it('typed R1VErrors naming the argument', () => {
    expectR1VError(() => advantages.grpo([1, 2, 3], { groupSize: 2 }), 'SHAPE', /grpo: rewards has 3 entries, not a multiple of groupSize 2/);
    expectR1VError(() => advantages.rloo([1, 2, 3, 4], { groupSize: 3 }), 'SHAPE', /rloo: .*groupSize 3/);
    expectR1VError(() => advantages.reinforcePlusPlus([1, 2, 3], { groupSize: 2 }), 'SHAPE', /groupSize 2/);
    expectR1VError(() => advantages.grpo([1, 2], { groupSize: 0 }), 'ARGUMENT', /groupSize must be an integer ≥ 1/);
    expectR1VError(() => advantages.grpo([1, 2], { groupSize: 1.5 }), 'ARGUMENT', /groupSize/);
    expectR1VError(() => advantages.grpo([1, 2], {} as never), 'ARGUMENT', /groupSize/);
    expectR1VError(() => advantages.grpo([1, 2], { groupSize: 2, eps: 0 }), 'ARGUMENT', /eps must be a finite number > 0/);
    expectR1VError(() => advantages.grpo([1, 2], { groupSize: 2, std: true } as never), 'ARGUMENT', /unknown option 'std'/);
    expectR1VError(() => advantages.grpo([1, Number.NaN], { groupSize: 2 }), 'ARGUMENT', /rewards\[1\] must be a finite number/);
    expectR1VError(() => advantages.grpo('12' as never, { groupSize: 2 }), 'ARGUMENT', /rewards must be an array/);
    const cu = Int32Array.from([0, 2, 3]);
    expectR1VError(() => advantages.gae([1, 2, 3], [1, 2], cu), 'SHAPE', /values has 2 entries but tokenRewards has 3/);
    expectR1VError(() => advantages.gae([1, 2], [1, 2], cu), 'SHAPE', /cuSeqlens must end at 2, got 3/);
    expectR1VError(() => advantages.gae([1, 2, 3], [1, 2, 3], [0, 3] as never), 'ARGUMENT', /cuSeqlens must be an Int32Array/);
    expectR1VError(() => advantages.gae([1, 2, 3], [1, 2, 3], cu, { gamma: 1.5 }), 'ARGUMENT', /gamma must be a finite number ≥ 0 ≤ 1/);
    expectR1VError(() => advantages.gae([1, 2, 3], [1, 2, 3], cu, { lam: 0.9 } as never), 'ARGUMENT', /unknown option 'lam'/);
    expectR1VError(() => expandToTokens([1, 2, 3], cu), 'SHAPE', /perSequence has 3 entries but cuSeqlens describes 2 sequences/);
  });
});

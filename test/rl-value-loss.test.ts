// rl.valueLoss: hand cases, a per-sequence float64 reference in every aggregation mode, dValues
// against central finite differences, and bad input.
import assert from 'node:assert/strict';

import { valueLoss, type ValueLossInput } from '../lib/rl/index.js';
import {
  aggregateReference, assertAllClose, assertClose, assertGradient, MODES, randomCuSeqlens, split, uniform,
} from './reference/rl.js';
import { expectR1VError, rng } from './helpers.js';

function reference(input: ValueLossInput): { loss: number; clipFrac: number; meanValue: number } {
  const c = input.clip ?? 0.2;
  const cu = input.cuSeqlens;
  const old = split(input.oldValues, cu);
  const ret = split(input.returns, cu);
  let clipped = 0;
  const losses = split(input.values, cu).map((seq, b) => seq.map((v, t) => {
    const o = old[b]![t]!;
    const r = ret[b]![t]!;
    const vClipped = v < o - c ? o - c : v > o + c ? o + c : v;
    if ((vClipped - r) ** 2 > (v - r) ** 2) clipped++;
    return Math.max((v - r) ** 2, (vClipped - r) ** 2);
  }));
  const tokens = input.values.length;
  return {
    loss: 0.5 * aggregateReference(losses, input.aggregation ?? 'token-mean', input.maxLength),
    clipFrac: clipped / tokens,
    meanValue: Array.from(input.values).reduce((a, x) => a + x, 0) / tokens,
  };
}

/** Values at distance ≥ 0.05 from old ± clip and from the point where the two terms tie. */
function randomInput(next: () => number, aggregation: ValueLossInput['aggregation'], clip: number): ValueLossInput & { values: Float64Array } {
  const cuSeqlens = randomCuSeqlens(next, 8, 8);
  const tokens = cuSeqlens[cuSeqlens.length - 1]!;
  const oldValues = uniform(tokens, next, -1, 1);
  const returns = uniform(tokens, next, -2, 2);
  const values = Float64Array.from(oldValues, (o, t) => {
    for (;;) {
      const v = o + 4 * clip * (next() - 0.5) * 2;
      const clipped = Math.min(Math.max(v, o - clip), o + clip);
      const far = Math.abs(v - (o - clip)) > 0.05 && Math.abs(v - (o + clip)) > 0.05;
      if (far && Math.abs(Math.abs(clipped - returns[t]!) - Math.abs(v - returns[t]!)) > 0.05) return v;
    }
  });
  return { values, oldValues, returns, cuSeqlens, clip, aggregation };
}

describe('rl.valueLoss', () => {
  it('hand cases: clipped term larger (gradient 0), inside the range, unclipped larger', () => {
    const one = Int32Array.from([0, 1]);
    // v = 1, old = 0.5, c = 0.2 → clip(v) = 0.7; R = 2: (1 − 2)² = 1 < (0.7 − 2)² = 1.69.
    let out = valueLoss({ values: [1], oldValues: [0.5], returns: [2], cuSeqlens: one });
    assertClose(out.loss, 0.845, 1e-12, 'clipped');
    assert.equal(out.dValues[0], 0);
    assert.deepEqual(out.metrics, { clipFrac: 1, meanValue: 1 });
    // v = 0.6 inside [0.3, 0.7]: both terms (0.6 − 2)² = 1.96; gradient (v − R).
    out = valueLoss({ values: [0.6], oldValues: [0.5], returns: [2], cuSeqlens: one });
    assertClose(out.loss, 0.98, 1e-12, 'inside');
    assertClose(out.dValues[0]!, -1.4, 1e-7, 'inside gradient');
    assert.equal(out.metrics.clipFrac, 0);
    // v = 1.5, old = 1 → clip 1.2; R = 0: 2.25 > 1.44, the unclipped term counts.
    out = valueLoss({ values: [1.5], oldValues: [1], returns: [0], cuSeqlens: one });
    assertClose(out.loss, 1.125, 1e-12, 'unclipped larger');
    assertClose(out.dValues[0]!, 1.5, 1e-7, 'unclipped gradient');
    // Two sequences, seq-mean-token-sum: (0.5·1.96 + 0.5·(2.25 + 2.25)) / 2.
    out = valueLoss({
      values: [0.6, 1.5, 1.5], oldValues: [0.5, 1, 1], returns: [2, 0, 0], cuSeqlens: Int32Array.from([0, 1, 3]), aggregation: 'seq-mean-token-sum',
    });
    assertClose(out.loss, (0.98 + 2.25) / 2, 1e-12, 'seq-mean-token-sum');
    assertAllClose(out.dValues, [-1.4 / 2, 1.5 / 2, 1.5 / 2], 1e-7, 'seq-mean-token-sum gradient');
  });

  it('random cases in every aggregation mode match the float64 reference, dValues central differences', () => {
    const next = rng('value loss');
    for (const aggregation of MODES) {
      for (const clip of [0.2, 0.5]) {
        const input = randomInput(next, aggregation, clip);
        const out = valueLoss(input);
        const ref = reference(input);
        assertClose(out.loss, ref.loss, 1e-12, `${aggregation}: loss`);
        assertClose(out.metrics.clipFrac, ref.clipFrac, 1e-12, `${aggregation}: clipFrac`);
        assertClose(out.metrics.meanValue, ref.meanValue, 1e-12, `${aggregation}: meanValue`);
        assert.ok(ref.clipFrac > 0 && ref.clipFrac < 1, 'the sample has clipped and unclipped tokens');
        assert.ok(out.dValues instanceof Float32Array);
        assertGradient((values) => valueLoss({ ...input, values }).loss, input.values, out.dValues, `${aggregation} clip ${clip}`);
      }
    }
    const input = randomInput(next, 'seq-mean-token-sum-norm', 0.3);
    assertClose(valueLoss({ ...input, maxLength: 20 }).loss, reference({ ...input, maxLength: 20 }).loss, 1e-12, 'maxLength');
  });

  it('rejects bad input with typed errors naming the argument', () => {
    const cuSeqlens = Int32Array.from([0, 2]);
    const ok: ValueLossInput = { values: [1, 2], oldValues: [1, 2], returns: [0, 1], cuSeqlens };
    expectR1VError(() => valueLoss({ ...ok, returns: [1] }), 'SHAPE', /rl\.valueLoss: returns has 1 entries but values has 2/);
    expectR1VError(() => valueLoss({ ...ok, cuSeqlens: Int32Array.from([0, 1]) }), 'SHAPE', /cuSeqlens must end at 2/);
    expectR1VError(() => valueLoss({ ...ok, clip: -0.1 }), 'ARGUMENT', /clip must be a finite number ≥ 0/);
    expectR1VError(() => valueLoss({ ...ok, cliprange: 0.2 } as never), 'ARGUMENT', /unknown option 'cliprange'/);
    expectR1VError(() => valueLoss({ ...ok, aggregation: 'sum' as never }), 'ARGUMENT', /aggregation must be one of/);
  });
});

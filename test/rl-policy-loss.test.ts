// rl.policyLoss (ppo, gspo, pg; clip-higher, dual-clip, KL k1/k2/k3 in both modes, entropy
// bonus, every aggregation mode) and rl.klPenalty: hand-computed cases, a per-sequence float64
// reference written from the equations, and gradients against central finite differences of
// the function's own loss.
import assert from 'node:assert/strict';

import {
  type KlKind, klEstimators, klPenalty, policyLoss, type PolicyLossInput, type PolicyLossKind,
} from '../lib/rl/index.js';
import {
  aggregateReference, assertAllClose, assertClose, assertGradient, MODES, randomCuSeqlens, split, uniform,
} from './reference/rl.js';
import { expectR1VError, rng } from './helpers.js';

const KINDS: readonly PolicyLossKind[] = ['ppo', 'gspo', 'pg'];
const KL_KINDS: readonly KlKind[] = ['k1', 'k2', 'k3'];

/** The KL estimators from their definitions in the issue (logp, ref). */
const klReference: Record<KlKind, (logp: number, ref: number) => number> = {
  k1: (logp, ref) => logp - ref,
  k2: (logp, ref) => 0.5 * (logp - ref) ** 2,
  k3: (logp, ref) => Math.exp(ref - logp) - (ref - logp) - 1,
};

/** Per-sequence reference of the loss and metrics, straight from the equations. */
function reference(input: PolicyLossInput) {
  const cu = input.cuSeqlens;
  const lp = split(input.logprobs, cu);
  const old = split(input.oldLogprobs, cu);
  const adv = split(input.advantages, cu);
  const low = input.clipLow ?? 0.2;
  const high = input.clipHigh ?? 0.2;
  const losses: number[][] = [];
  const ratios: number[][] = [];
  lp.forEach((seq, b) => {
    const sequenceRatio = Math.exp(seq.reduce((a, x, t) => a + x - old[b]![t]!, 0) / seq.length);
    const r = seq.map((x, t) => (input.kind === 'gspo' ? sequenceRatio : Math.exp(x - old[b]![t]!)));
    ratios.push(r);
    losses.push(seq.map((x, t) => {
      const a = adv[b]![t]!;
      if (input.kind === 'pg') return -a * x;
      const ppo = Math.max(-a * r[t]!, -a * Math.min(Math.max(r[t]!, 1 - low), 1 + high));
      return input.dualClip !== undefined && a < 0 ? Math.min(ppo, -a * input.dualClip) : ppo;
    }));
  });
  const mode = input.aggregation ?? 'seq-mean-token-mean';
  let loss = aggregateReference(losses, mode, input.maxLength);
  const tokens = input.logprobs.length;
  const flatRatios = ratios.flat();
  const flatAdv = adv.flat();
  const metrics: Record<string, number> = {
    clipFracLow: input.kind === 'pg' ? 0 : flatRatios.filter((r, t) => r < 1 - low && flatAdv[t]! < 0).length / tokens,
    clipFracHigh: input.kind === 'pg' ? 0 : flatRatios.filter((r, t) => r > 1 + high && flatAdv[t]! > 0).length / tokens,
    approxKl: Array.from(input.logprobs).reduce((a, x, t) => a + input.oldLogprobs[t]! - x, 0) / tokens,
  };
  if (input.kl) {
    const kl = klReference[input.kl.kind];
    const perToken = lp.map((seq, b) => seq.map((x, t) => kl(x, split(input.refLogprobs!, cu)[b]![t]!)));
    metrics.kl = perToken.flat().reduce((a, x) => a + x, 0) / tokens;
    if ((input.kl.mode ?? 'loss') === 'loss') loss += input.kl.coef * aggregateReference(perToken, mode, input.maxLength);
  }
  if (input.entropy) {
    metrics.entropy = aggregateReference(split(input.entropy, cu), mode, input.maxLength);
    loss -= (input.entropyCoef ?? 0) * metrics.entropy;
  }
  return { loss, metrics };
}

/** log-ratios d = logp − old with ratios exp(d) (per token, or per sequence for gspo) kept away from the clip kinks. */
function logRatiosAwayFromKinks(next: () => number, cu: Int32Array, kind: PolicyLossKind, kinks: number[]): Float64Array {
  const d = new Float64Array(cu[cu.length - 1]!);
  const draw = () => {
    for (;;) {
      const ratio = 0.3 + 2.7 * next();
      if (kinks.every((k) => Math.abs(ratio - k) > 0.02)) return Math.log(ratio);
    }
  };
  for (let b = 0; b + 1 < cu.length; b++) {
    const [start, end] = [cu[b]!, cu[b + 1]!];
    if (kind !== 'gspo') for (let t = start; t < end; t++) d[t] = draw();
    else {
      // Mean log-ratio = log s: noise of zero mean around it.
      const noise = Array.from({ length: end - start }, () => next() - 0.5);
      const noiseMean = noise.reduce((a, x) => a + x, 0) / Math.max(noise.length, 1);
      const logS = draw();
      noise.forEach((x, i) => { d[start + i] = logS + x - noiseMean; });
    }
  }
  return d;
}

interface Case {
  kind: PolicyLossKind;
  aggregation: (typeof MODES)[number];
  dualClip?: number;
  kl?: { kind: KlKind; coef: number; mode: 'loss' | 'reward' };
  entropyCoef?: number;
  clipLow: number;
  clipHigh: number;
  maxLength?: number;
}

function randomInput(next: () => number, c: Case): PolicyLossInput & { logprobs: Float64Array; entropy: Float64Array } {
  const cu = randomCuSeqlens(next, 5, 7);
  const tokens = cu[cu.length - 1]!;
  const kinks = [1 - c.clipLow, 1 + c.clipHigh, ...(c.dualClip ? [c.dualClip] : [])];
  const oldLogprobs = uniform(tokens, next, -3, -0.1);
  const d = logRatiosAwayFromKinks(next, cu, c.kind, kinks);
  const logprobs = Float64Array.from(oldLogprobs, (o, t) => o + d[t]!);
  // Per-sequence advantages of both signs, plus per-token noise on one sequence in two.
  const perSequence = uniform(cu.length - 1, next, -2, 2);
  const advantages = new Float64Array(tokens);
  for (let b = 0; b + 1 < cu.length; b++) {
    for (let t = cu[b]!; t < cu[b + 1]!; t++) advantages[t] = perSequence[b]! + (b % 2 === 1 ? next() - 0.5 : 0);
  }
  return {
    kind: c.kind, logprobs, oldLogprobs, advantages, cuSeqlens: cu,
    clipLow: c.clipLow, clipHigh: c.clipHigh, dualClip: c.dualClip, aggregation: c.aggregation, maxLength: c.maxLength,
    ...(c.kl ? { kl: c.kl, refLogprobs: uniform(tokens, next, -3, -0.1) } : {}),
    entropy: uniform(tokens, next, 0.1, 4), entropyCoef: c.entropyCoef ?? 0,
  };
}

/** Every combination the tests sweep: each kind × aggregation, dual-clip, each KL kind in both modes, entropy, asymmetric clips. */
function cases(next: () => number): Case[] {
  const out: Case[] = [];
  for (const kind of KINDS) {
    for (const aggregation of MODES) {
      out.push({ kind, aggregation, clipLow: 0.2, clipHigh: 0.2 });
      out.push({ kind, aggregation, clipLow: 0.2, clipHigh: 0.28, entropyCoef: 0.01 + 0.1 * next() });
      if (kind !== 'pg') out.push({ kind, aggregation, clipLow: 0.1, clipHigh: 0.3, dualClip: 1.5 + next() });
      for (const klKind of KL_KINDS) {
        for (const mode of ['loss', 'reward'] as const) {
          out.push({ kind, aggregation, clipLow: 0.2, clipHigh: 0.25, kl: { kind: klKind, coef: 0.05 + next(), mode } });
        }
      }
    }
    out.push({ kind, aggregation: 'seq-mean-token-sum-norm', clipLow: 0.2, clipHigh: 0.2, maxLength: 12 });
  }
  return out;
}

const describeCase = (c: Case) =>
  `${c.kind} ${c.aggregation} clip ${c.clipLow}/${c.clipHigh}${c.dualClip ? ' dual' : ''}${c.kl ? ` ${c.kl.kind}/${c.kl.mode}` : ''}${c.entropyCoef ? ' entropy' : ''}${c.maxLength ? ' maxLength' : ''}`;

describe('rl.policyLoss', () => {
  it('ppo hand cases: clipped both sides, unclipped gradient, clip-higher, dual-clip', () => {
    const one = Int32Array.from([0, 2]);
    const base = { kind: 'ppo' as const, cuSeqlens: one, oldLogprobs: [-1, -1], aggregation: 'token-mean' as const };
    // r = 1.5 with A = 1: −1.2 (high clip); r = 0.5 with A = −1: 0.8 (low clip). Both gradients 0.
    let out = policyLoss({ ...base, logprobs: [-1 + Math.log(1.5), -1 + Math.log(0.5)], advantages: [1, -1] });
    assertClose(out.loss, -0.2, 1e-12, 'clipped loss');
    assert.deepEqual(Array.from(out.dLogprobs), [0, 0]);
    assert.deepEqual([out.metrics.clipFracLow, out.metrics.clipFracHigh], [0.5, 0.5]);
    assertClose(out.metrics.approxKl, (-Math.log(1.5) - Math.log(0.5)) / 2, 1e-12, 'approxKl');
    // r = 1.1 with A = 2, r = 0.9 with A = −1: ℓ = [−2.2, 0.9]; dℓ/dlogp = −A·r, times 1/2.
    out = policyLoss({ ...base, logprobs: [-1 + Math.log(1.1), -1 + Math.log(0.9)], advantages: [2, -1] });
    assertClose(out.loss, -0.65, 1e-12, 'unclipped loss');
    assertAllClose(out.dLogprobs, [-1.1, 0.45], 1e-7, 'unclipped gradient');
    // r = 1.25, A = 1: clipped at 1.2 with symmetric 0.2, not with clipHigh 0.28.
    const single = { kind: 'ppo' as const, cuSeqlens: Int32Array.from([0, 1]), oldLogprobs: [0], logprobs: [Math.log(1.25)], advantages: [1] };
    out = policyLoss(single);
    assert.deepEqual([out.loss, out.dLogprobs[0], out.metrics.clipFracHigh], [-1.2, 0, 1]);
    out = policyLoss({ ...single, clipHigh: 0.28 });
    assertClose(out.loss, -1.25, 1e-12, 'clip-higher');
    assertClose(out.dLogprobs[0]!, -1.25, 1e-7, 'clip-higher gradient');
    assert.equal(out.metrics.clipFracHigh, 0);
    // Dual clip c = 3, A = −1: r = 4 → min(4, 3) = 3 (gradient 0); r = 2 → 2 (gradient −A·r = 2).
    const dual = { kind: 'ppo' as const, cuSeqlens: Int32Array.from([0, 1]), oldLogprobs: [0], advantages: [-1], dualClip: 3 };
    out = policyLoss({ ...dual, logprobs: [Math.log(4)] });
    assert.deepEqual([out.loss, out.dLogprobs[0]], [3, 0]);
    assertClose(policyLoss({ ...dual, logprobs: [Math.log(4)], dualClip: undefined }).loss, 4, 1e-12, 'without dual clip');
    out = policyLoss({ ...dual, logprobs: [Math.log(2)] });
    assertClose(out.loss, 2, 1e-12, 'under the dual bound');
    assertClose(out.dLogprobs[0]!, 2, 1e-7, 'under the dual bound, gradient');
  });

  it('ties at a clip boundary (and at the dual bound) take the unclipped gradient', () => {
    const one = { kind: 'ppo' as const, cuSeqlens: Int32Array.from([0, 1]), oldLogprobs: [0] };
    const at = (ratio: number) => ({ ...one, logprobs: [Math.log(ratio)] });
    const r = Math.exp(Math.log(1.25)); // the ratio the loss sees; r − 1 and back are exact
    let out = policyLoss({ ...at(1.25), advantages: [1], clipHigh: r - 1 });
    assertClose(out.dLogprobs[0]!, -r, 1e-7, 'tie at 1 + clipHigh');
    assert.equal(out.metrics.clipFracHigh, 0);
    const s = Math.exp(Math.log(0.75));
    out = policyLoss({ ...at(0.75), advantages: [-2], clipLow: 1 - s });
    assertClose(out.dLogprobs[0]!, 2 * s, 1e-7, 'tie at 1 − clipLow');
    assert.equal(out.metrics.clipFracLow, 0);
    const c = Math.exp(Math.log(2.5));
    out = policyLoss({ ...at(2.5), advantages: [-1], dualClip: c });
    assertClose(out.dLogprobs[0]!, c, 1e-7, 'tie at the dual bound');
  });

  it('gspo and pg hand cases', () => {
    // One sequence of two tokens with mean log-ratio log 1.1: s = 1.1, A = 1: ℓ = −1.1 per token;
    // dlogp_t = (Σ_u w_u · (−A)) · s / L = −1 · 1.1 / 2.
    const shift = 0.3;
    const gspo = policyLoss({
      kind: 'gspo', cuSeqlens: Int32Array.from([0, 2]), oldLogprobs: [-1, -2],
      logprobs: [-1 + Math.log(1.1) + shift, -2 + Math.log(1.1) - shift], advantages: [1, 1],
    });
    assertClose(gspo.loss, -1.1, 1e-12, 'gspo loss');
    assertAllClose(gspo.dLogprobs, [-0.55, -0.55], 1e-7, 'gspo gradient');
    assert.equal(gspo.metrics.clipFracHigh, 0); // the token ratios exp(log 1.1 ± 0.3) do not count: the sequence ratio does
    // pg: ℓ = −A·logp = [0.5, 1], token-mean 0.75, gradient −A/T.
    const pg = policyLoss({ kind: 'pg', cuSeqlens: Int32Array.from([0, 2]), oldLogprobs: [-1, -1], logprobs: [-1, -2], advantages: [0.5, 0.5], aggregation: 'token-mean' });
    assertClose(pg.loss, 0.75, 1e-12, 'pg loss');
    assertAllClose(pg.dLogprobs, [-0.25, -0.25], 1e-7, 'pg gradient');
    assert.deepEqual([pg.metrics.clipFracLow, pg.metrics.clipFracHigh], [0, 0]);
  });

  it('the four aggregation modes on per-token losses 4 | 1 2 3 (and an empty sequence)', () => {
    // pg with logp = −1 makes ℓ_t = A_t.
    const cuSeqlens = Int32Array.from([0, 1, 1, 4]);
    const input = { kind: 'pg' as const, cuSeqlens, logprobs: [-1, -1, -1, -1], oldLogprobs: [-1, -1, -1, -1], advantages: [4, 1, 2, 3] };
    const expected = { 'token-mean': 2.5, 'seq-mean-token-sum': 5, 'seq-mean-token-mean': 3, 'seq-mean-token-sum-norm': 10 / 6 };
    for (const [aggregation, loss] of Object.entries(expected)) {
      assertClose(policyLoss({ ...input, aggregation: aggregation as never }).loss, loss, 1e-12, aggregation);
    }
    assertClose(policyLoss({ ...input, aggregation: 'seq-mean-token-sum-norm', maxLength: 5 }).loss, 1, 1e-12, 'maxLength 5');
    assertClose(policyLoss(input).loss, 3, 1e-12, 'default seq-mean-token-mean');
  });

  it('KL (k3) and entropy bonus, hand case', () => {
    // d = logp − ref = log 2: k3 = 1/2 + log 2 − 1, ∂/∂logp = 1 − 1/2.
    const input: PolicyLossInput = {
      kind: 'pg', cuSeqlens: Int32Array.from([0, 1]), logprobs: [-1], oldLogprobs: [-1], advantages: [0],
      refLogprobs: [-1 - Math.log(2)], kl: { kind: 'k3', coef: 0.1 }, entropy: [2.5], entropyCoef: 0.01,
    };
    const k3 = 0.5 + Math.log(2) - 1;
    const out = policyLoss(input);
    assertClose(out.loss, 0.1 * k3 - 0.01 * 2.5, 1e-12, 'loss');
    assertClose(out.dLogprobs[0]!, 0.1 * 0.5, 1e-7, 'dLogprobs');
    assertClose(out.dEntropy[0]!, -0.01, 1e-9, 'dEntropy');
    assertClose(out.metrics.kl!, k3, 1e-12, 'kl metric');
    assertClose(out.metrics.entropy!, 2.5, 1e-12, 'entropy metric');
    const reward = policyLoss({ ...input, kl: { kind: 'k3', coef: 0.1, mode: 'reward' } });
    assertClose(reward.loss, -0.01 * 2.5, 1e-12, 'reward mode leaves the loss');
    assert.ok(reward.dLogprobs[0] === 0, 'reward mode adds no gradient');
    assertClose(reward.metrics.kl!, k3, 1e-12, 'reward mode still reports kl');
  });

  it('random cases in every kind × aggregation × clip/dual/KL/entropy setting: the float64 reference, and gradients by central differences', () => {
    const next = rng('policy-loss random cases');
    for (const c of cases(next)) {
      const input = randomInput(next, c);
      const out = policyLoss(input);
      const ref = reference(input);
      const label = describeCase(c);
      assertClose(out.loss, ref.loss, 1e-12, `${label}: loss`);
      for (const [name, value] of Object.entries(ref.metrics)) {
        assertClose(out.metrics[name as keyof typeof out.metrics]!, value, 1e-12, `${label}: metrics.${name}`);
      }
      if (!c.kl) assert.equal(out.metrics.kl, undefined);
      assert.ok(out.dLogprobs instanceof Float32Array && out.dEntropy instanceof Float32Array);
      assertGradient((logprobs) => policyLoss({ ...input, logprobs }).loss, input.logprobs, out.dLogprobs, `${label}: dLogprobs`);
      assertGradient((entropy) => policyLoss({ ...input, entropy }).loss, input.entropy, out.dEntropy, `${label}: dEntropy`);
    }
  });

  it('accepts Float32Array, Float64Array and number[] alike', () => {
    const next = rng('policy-loss array kinds');
    const input = randomInput(next, { kind: 'ppo', aggregation: 'token-mean', clipLow: 0.2, clipHigh: 0.2 });
    const f32 = { ...input, logprobs: Float32Array.from(input.logprobs), oldLogprobs: Float32Array.from(input.oldLogprobs), advantages: Float32Array.from(input.advantages) };
    const list = { ...f32, logprobs: Array.from(f32.logprobs), oldLogprobs: Array.from(f32.oldLogprobs), advantages: Array.from(f32.advantages) };
    assert.equal(policyLoss(f32).loss, policyLoss(list).loss);
    assert.deepEqual(policyLoss(f32).dLogprobs, policyLoss(list).dLogprobs);
  });

  it('rejects bad input with typed errors naming the argument', () => {
    const cuSeqlens = Int32Array.from([0, 2, 3]);
    const ok: PolicyLossInput = { kind: 'ppo', logprobs: [-1, -2, -1], oldLogprobs: [-1, -2, -1], advantages: [1, 1, -1], cuSeqlens };
    expectR1VError(() => policyLoss({ ...ok, oldLogprobs: [-1, -2] }), 'SHAPE', /rl\.policyLoss: oldLogprobs has 2 entries but logprobs has 3/);
    expectR1VError(() => policyLoss({ ...ok, advantages: [1] }), 'SHAPE', /advantages has 1 entries but logprobs has 3/);
    expectR1VError(() => policyLoss({ ...ok, entropy: [1, 2] }), 'SHAPE', /entropy has 2 entries/);
    expectR1VError(() => policyLoss({ ...ok, cuSeqlens: Int32Array.from([0, 2]) }), 'SHAPE', /cuSeqlens must end at 3, got 2/);
    expectR1VError(() => policyLoss({ ...ok, cuSeqlens: Int32Array.from([0, 3, 2, 3]) }), 'SHAPE', /cuSeqlens decreases/);
    expectR1VError(() => policyLoss({ ...ok, clipRatio: 0.2 } as never), 'ARGUMENT', /unknown option 'clipRatio'/);
    expectR1VError(() => policyLoss({ ...ok, kind: 'grpo' as never }), 'ARGUMENT', /kind must be one of 'ppo', 'gspo', 'pg'/);
    expectR1VError(() => policyLoss({ ...ok, clipLow: 1 }), 'ARGUMENT', /clipLow must be a finite number ≥ 0 < 1, got 1/);
    expectR1VError(() => policyLoss({ ...ok, clipLow: -0.1 }), 'ARGUMENT', /clipLow/);
    expectR1VError(() => policyLoss({ ...ok, clipHigh: -0.1 }), 'ARGUMENT', /clipHigh/);
    expectR1VError(() => policyLoss({ ...ok, dualClip: 1 }), 'ARGUMENT', /dualClip must be a finite number > 1, got 1/);
    expectR1VError(() => policyLoss({ ...ok, kind: 'pg', dualClip: 3 }), 'ARGUMENT', /dualClip applies to the ratio kinds/);
    expectR1VError(() => policyLoss({ ...ok, kl: { kind: 'k3', coef: 0.1 } }), 'ARGUMENT', /kl needs refLogprobs/);
    expectR1VError(() => policyLoss({ ...ok, refLogprobs: [-1, -1, -1] }), 'ARGUMENT', /refLogprobs was given without kl/);
    const withRef = { ...ok, refLogprobs: [-1, -1, -1] };
    expectR1VError(() => policyLoss({ ...withRef, kl: { kind: 'k4' as never, coef: 0.1 } }), 'ARGUMENT', /kl\.kind must be one of 'k1', 'k2', 'k3'/);
    expectR1VError(() => policyLoss({ ...withRef, kl: { kind: 'k1', coef: -1 } }), 'ARGUMENT', /kl\.coef must be a finite number ≥ 0/);
    expectR1VError(() => policyLoss({ ...withRef, kl: { kind: 'k1', coef: 1, mode: 'both' as never } }), 'ARGUMENT', /kl\.mode/);
    expectR1VError(() => policyLoss({ ...withRef, kl: { kind: 'k1', coef: 1, beta: 1 } as never }), 'ARGUMENT', /kl: unknown option 'beta'/);
    expectR1VError(() => policyLoss({ ...ok, entropyCoef: 0.01 }), 'ARGUMENT', /entropyCoef is 0\.01 but no entropy was given/);
    expectR1VError(() => policyLoss({ ...ok, aggregation: 'mean' as never }), 'ARGUMENT', /aggregation must be one of/);
    expectR1VError(() => policyLoss({ ...ok, maxLength: 0 }), 'ARGUMENT', /maxLength must be an integer ≥ 1/);
    expectR1VError(() => policyLoss({ ...ok, logprobs: [-1, Number.POSITIVE_INFINITY, -1] }), 'ARGUMENT', /logprobs\[1\] must be a finite number/);
    expectR1VError(() => policyLoss({ ...ok, cuSeqlens: [0, 2, 3] as never }), 'ARGUMENT', /cuSeqlens must be an Int32Array/);
    expectR1VError(() => policyLoss(undefined as never), 'ARGUMENT', /kind must be one of/);
  });
});

describe('rl.klPenalty and the KL estimators', () => {
  it('per-token values of k1, k2, k3 from their definitions, as Float32Array', () => {
    const next = rng('kl penalty');
    const logprobs = uniform(9, next, -4, -0.1);
    const ref = uniform(9, next, -4, -0.1);
    for (const kind of KL_KINDS) {
      const out = klPenalty(logprobs, ref, kind);
      assert.ok(out instanceof Float32Array);
      assertAllClose(out, Array.from(logprobs, (x, t) => klReference[kind](x, ref[t]!)), 2e-6, kind);
    }
    assertClose(klPenalty([Math.log(0.5)], [Math.log(0.25)], 'k3')[0]!, 0.5 - Math.log(0.5) - 1, 1e-7, 'k3 hand');
    assert.ok(Array.from(klPenalty(logprobs, ref, 'k3')).every((x) => x >= 0));
  });

  it('each estimator derivative matches a central difference', () => {
    const next = rng('kl derivatives');
    for (const kind of KL_KINDS) {
      const d = Float64Array.from({ length: 5 }, () => 4 * next() - 2);
      for (let i = 0; i < d.length; i++) {
        const h = 1e-6;
        const numeric = (klEstimators[kind].value(d[i]! + h) - klEstimators[kind].value(d[i]! - h)) / (2 * h);
        assertClose(klEstimators[kind].dLogprob(d[i]!), numeric, 1e-6, `${kind} at ${d[i]}`);
      }
    }
  });

  it('rejects bad input', () => {
    expectR1VError(() => klPenalty([1, 2], [1], 'k1'), 'SHAPE', /rl\.klPenalty: refLogprobs has 1 entries but logprobs has 2/);
    expectR1VError(() => klPenalty([1], [1], 'kl' as never), 'ARGUMENT', /kind must be one of 'k1', 'k2', 'k3'/);
  });
});

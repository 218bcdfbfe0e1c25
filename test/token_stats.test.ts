import assert from 'node:assert/strict';

import { devices, Engine, type FloatDType, ops, type Tensor } from '../lib/index.js';
import {
  expectR1VError, expectR1VRejection, forEachDevice, randomArray, randomInts, relativeError, rng, scaled,
} from './helpers.js';
import { centralDifferenceAlong } from './reference/diff.js';
import { matmulReference } from './reference/layers.js';
import { dot, softmaxStats, softmaxStatsGradient } from './reference/math.js';

// ---- float64 references, written from the definitions ----

/** Σ_r w1[r]·logp[r] + w2[r]·H[r] of softmax(z / T) in float64. */
function referenceLoss(z: ArrayLike<number>, n: number, v: number, targets: Int32Array, w1: ArrayLike<number>,
  w2: ArrayLike<number>, t: number): number {
  const { logp, entropy } = softmaxStats(z, n, v, targets, t);
  let loss = 0;
  for (let r = 0; r < n; r++) loss += w1[r]! * logp[r]! + w2[r]! * entropy[r]!;
  return loss;
}

/**
 * Random targets in [0, v) and upstream gradients dLogprobs, dEntropy (zero without the entropy
 * term), as arrays and as tensors on e (disposed with the result).
 */
function randomUpstream(e: Engine, n: number, v: number, withEntropy: boolean, next: () => number) {
  const targets = randomInts(n, v, next);
  const dl = randomArray(n, next);
  const de = withEntropy ? randomArray(n, next) : new Float32Array(n);
  const [tt, tdl, tde] = [e.tensor<'i32'>(targets, [n]), e.tensor(dl, [n]), e.tensor(de, [n])];
  return { targets, dl, de, tt, tdl, tde, [Symbol.dispose]: () => [tt, tdl, tde].forEach((x) => x.dispose()) };
}

/** hidden·weightᵀ in float64. */
function linearLogits(hidden: ArrayLike<number>, weight: ArrayLike<number>, n: number, hd: number, v: number): Float64Array {
  return matmulReference(hidden, n, hd, false, weight, v, hd, true).out;
}

/** dHidden = dZ·W, dWeight = dZᵀ·hidden in float64. */
function linearGradients(dz: Float64Array, hidden: ArrayLike<number>, weight: ArrayLike<number>, n: number, hd: number,
  v: number): { dHidden: Float64Array; dWeight: Float64Array } {
  return {
    dHidden: matmulReference(dz, n, v, false, weight, v, hd, false).out,
    dWeight: matmulReference(dz, n, v, true, hidden, n, hd, false).out,
  };
}

/**
 * The second output of an op that met a bad target: on the CPU it rejects like the first; on
 * CUDA the device error was raised by the first readback, and this one shows NaN in the bad row.
 */
async function expectPoisonedRow(t: Tensor<'f32'>, row: number, pattern: RegExp): Promise<void> {
  if (t.device === 'cpu') {
    await expectR1VRejection(t.toArray(), 'ARGUMENT', pattern);
    return;
  }
  const got = await t.toArray();
  assert.ok(Number.isNaN(got[row]), `row ${row} should be NaN: ${got}`);
  assert.ok(got.every((x, i) => i === row || Number.isFinite(x)), `only row ${row} is NaN: ${got}`);
}

const tol = (dtype: FloatDType): number => (dtype === 'f32' ? 1e-4 : 2e-2);

forEachDevice('tokenStats', { seed: 7 }, ({ device, dtypes, it }) => {
  // [N, V, T, logit scale]
  const CASES: Array<[number, number, number, number]> = [
    [1, 1, 1, 4], [1, 7, 1, 4], [3, 1000, 0.7, 5], [5, 4099, 1.3, 3], [17, 33, 1, 4], [2, 151, 0.7, 3],
  ];

  for (const dtype of dtypes) {
    it(`${dtype}: logprobs and entropy against float64, odd sizes, temperatures`, async (e) => {
      const next = rng(`token-stats-fwd-${device}-${dtype}`);
      for (const [n, v, t, scale] of CASES) {
        using logits = e.tensor(scaled(randomArray(n * v, next), scale), [n, v], { dtype });
        const targets = randomInts(n, v, next);
        using tt = e.tensor<'i32'>(targets, [n]);
        const stats = ops.tokenStats(logits, tt, { temperature: t });
        using lp = stats.logprobs;
        using ent = stats.entropy;
        assert.deepEqual(lp.shape, [n]);
        assert.equal(ent.dtype, 'f32');
        const ref = softmaxStats(await logits.toArray(), n, v, targets, t);
        const errs = [relativeError(await lp.toArray(), ref.logp), relativeError(await ent.toArray(), ref.entropy)];
        assert.ok(errs[0]! <= tol(dtype) && errs[1]! <= tol(dtype), `[${n}, ${v}] T=${t}: ${errs}`);
      }
    });

    it(`${dtype}: backward against float64, with and without an entropy coefficient`, async (e) => {
      const next = rng(`token-stats-bwd-${device}-${dtype}`);
      for (const [n, v, t, scale] of CASES) {
        for (const withEntropy of [false, true]) {
          using logits = e.tensor(scaled(randomArray(n * v, next), scale), [n, v], { dtype });
          using upstream = randomUpstream(e, n, v, withEntropy, next);
          const { targets, dl, de, tt, tdl, tde } = upstream;
          using dz = ops.tokenStatsBackward(logits, tt, tdl, tde, { temperature: t });
          assert.deepEqual(dz.shape, [n, v]);
          assert.equal(dz.dtype, dtype);
          const ref = softmaxStatsGradient(await logits.toArray(), n, v, targets, dl, de, t);
          const err = relativeError(await dz.toArray(), ref);
          assert.ok(err <= tol(dtype), `[${n}, ${v}] T=${t} dEntropy ${withEntropy}: ${err}`);
        }
      }
    });
  }

  it('backward matches central finite differences of the float64 loss', async (e) => {
    const next = rng(`token-stats-fd-${device}`);
    for (const [n, v, t] of [[3, 11, 0.7], [2, 40, 1.3], [1, 1, 1]] as Array<[number, number, number]>) {
      const z = scaled(randomArray(n * v, next), 4);
      const targets = randomInts(n, v, next);
      const w1 = randomArray(n, next);
      const w2 = randomArray(n, next);
      const dir = randomArray(n * v, next);
      using logits = e.tensor(z, [n, v]);
      using tt = e.tensor<'i32'>(targets, [n]);
      using tw1 = e.tensor(w1, [n]);
      using tw2 = e.tensor(w2, [n]);
      using dz = ops.tokenStatsBackward(logits, tt, tw1, tw2, { temperature: t });
      const fd = centralDifferenceAlong(([moved]) => referenceLoss(moved!, n, v, targets, w1, w2, t), [z], [dir], 1e-5);
      const analytic = dot(await dz.toArray(), dir);
      assert.ok(Math.abs(analytic - fd) <= 1e-4 * Math.max(1, Math.abs(fd)), `[${n}, ${v}]: ${analytic} vs ${fd}`);
    }
  });

  it('masked (−inf) logits get zero probability and zero gradient; an all-equal row is uniform', async (e) => {
    const n = 2, v = 6;
    const z = new Float32Array([0.5, -Infinity, 2, -Infinity, 1, -3, 4, 4, 4, 4, 4, 4]);
    const targets = new Int32Array([2, 3]);
    using logits = e.tensor(z, [n, v]);
    using tt = e.tensor<'i32'>(targets, [n]);
    const stats = ops.tokenStats(logits, tt);
    using lp = stats.logprobs;
    using ent = stats.entropy;
    const ref = softmaxStats(z, n, v, targets, 1);
    assert.ok(relativeError(await lp.toArray(), ref.logp) <= 1e-5);
    assert.ok(relativeError(await ent.toArray(), ref.entropy) <= 1e-5);
    assert.ok(Math.abs(ref.entropy[1]! - Math.log(6)) < 1e-12);
    using dl = e.tensor([0.3, -0.7], [n]);
    using de = e.tensor([1.1, 0.4], [n]);
    using dz = ops.tokenStatsBackward(logits, tt, dl, de);
    const got = await dz.toArray();
    assert.equal(got[1], 0);
    assert.equal(got[3], 0);
    assert.ok(relativeError(got, softmaxStatsGradient(z, n, v, targets, [0.3, -0.7], [1.1, 0.4], 1)) <= 1e-5);
  });

  it('a NaN logit makes its row NaN (statistics and gradient), leaving the other rows alone', async (e) => {
    const z = new Float32Array([0.5, NaN, 2, 1, -1, 3]);
    const targets = new Int32Array([0, 2]);
    using logits = e.tensor(z, [2, 3]);
    using tt = e.tensor<'i32'>(targets, [2]);
    const stats = ops.tokenStats(logits, tt);
    using lp = stats.logprobs;
    using ent = stats.entropy;
    const ref = softmaxStats(z.subarray(3), 1, 3, targets.subarray(1), 1);
    const [gotLp, gotEnt] = [await lp.toArray(), await ent.toArray()];
    assert.ok(Number.isNaN(gotLp[0]) && Number.isNaN(gotEnt[0]));
    assert.ok(Math.abs(gotLp[1]! - ref.logp[0]!) < 1e-5 && Math.abs(gotEnt[1]! - ref.entropy[0]!) < 1e-5);
    using ones = e.ones([2]);
    using dz = ops.tokenStatsBackward(logits, tt, ones, ones);
    const got = await dz.toArray();
    assert.ok(got.subarray(0, 3).every(Number.isNaN), `row 0: ${got.subarray(0, 3)}`);
    assert.ok(got.subarray(3).every(Number.isFinite));
  });

  it('an empty batch gives empty results', async (e) => {
    using logits = e.zeros([0, 5]);
    using tt = e.tensor<'i32'>(new Int32Array(0), [0]);
    const stats = ops.tokenStats(logits, tt);
    using lp = stats.logprobs;
    using ent = stats.entropy;
    assert.equal((await lp.toArray()).length, 0);
    assert.equal((await ent.toArray()).length, 0);
  });

  it('a target outside [0, V) makes the readback reject naming targets', async (e) => {
    using logits = e.randn([3, 7]);
    for (const bad of [7, -1]) {
      using tt = e.tensor<'i32'>(new Int32Array([0, bad, 2]), [3]);
      const stats = ops.tokenStats(logits, tt);
      using lp = stats.logprobs;
      using ent = stats.entropy;
      const pattern = device === 'cpu' ? new RegExp(`targets\\[1\\] = ${bad}`) : /targets/;
      await expectR1VRejection(lp.toArray(), 'ARGUMENT', pattern);
      await expectPoisonedRow(ent, 1, pattern);
      using zeros = e.zeros([3]);
      using dz = ops.tokenStatsBackward(logits, tt, zeros, zeros);
      await expectR1VRejection(dz.toArray(), 'ARGUMENT', device === 'cpu' ? /tokenStatsBackward: targets\[1\]/ : /targets/);
    }
    // the engine goes on working afterwards
    await e.synchronize().catch(() => undefined);
    using tt = e.tensor<'i32'>(new Int32Array([0, 1, 2]), [3]);
    const ok = ops.tokenStats(logits, tt);
    using lp = ok.logprobs;
    using ent = ok.entropy;
    assert.ok((await lp.toArray()).every(Number.isFinite));
    assert.ok((await ent.toArray()).every(Number.isFinite));
  });

  it('rejects bad arguments, naming them', (e) => {
    using logits = e.randn([3, 5]);
    using tt = e.tensor<'i32'>(new Int32Array([0, 1, 2]), [3]);
    using d3 = e.zeros([3]);
    expectR1VError(() => ops.tokenStats(e.randn([15]), tt), 'SHAPE', /tokenStats: logits/);
    expectR1VError(() => ops.tokenStats(e.zeros([3, 0]), tt), 'SHAPE', /logits/);
    expectR1VError(() => ops.tokenStats(e.tensor<'i32'>(new Int32Array(15), [3, 5]) as never, tt), 'DTYPE', /logits/);
    expectR1VError(() => ops.tokenStats(logits, e.zeros([3]) as unknown as Tensor<'i32'>), 'DTYPE', /targets/);
    expectR1VError(() => ops.tokenStats(logits, e.tensor<'i32'>(new Int32Array(4), [4])), 'SHAPE', /targets/);
    for (const temperature of [0, -1, Infinity, NaN]) {
      expectR1VError(() => ops.tokenStats(logits, tt, { temperature }), 'ARGUMENT', /temperature/);
    }
    expectR1VError(() => ops.tokenStats(logits, tt, { temp: 1 } as never), 'ARGUMENT', /temp/);
    expectR1VError(() => ops.tokenStatsBackward(logits, tt, e.zeros([4]), d3), 'SHAPE', /dLogprobs/);
    expectR1VError(() => ops.tokenStatsBackward(logits, tt, d3, e.zeros([3, 1])), 'SHAPE', /dEntropy/);
    expectR1VError(() => ops.tokenStatsBackward(logits, tt, d3, e.tensor<'i32'>(new Int32Array(3), [3]) as never), 'DTYPE', /dEntropy/);
    expectR1VError(() => ops.tokenStatsBackward(logits, tt, d3, d3, { temperature: 0 }), 'ARGUMENT', /temperature/);
    const other = Engine.create({ device });
    try {
      expectR1VError(() => ops.tokenStats(logits, other.tensor<'i32'>(new Int32Array([0, 1, 2]), [3])), 'DEVICE', /targets/);
      expectR1VError(() => ops.tokenStatsBackward(logits, tt, other.zeros([3]), d3), 'DEVICE', /dLogprobs/);
    } finally {
      other.dispose();
    }
    const gone = e.randn([3, 5]);
    gone.dispose();
    expectR1VError(() => ops.tokenStats(gone, tt), 'DISPOSED');
    if (device === 'cpu') {
      expectR1VError(() => ops.tokenStats(e.randn([3, 5], { dtype: 'bf16' }), tt), 'DTYPE', /logits/);
    }
  });
});

forEachDevice('linearTokenStats', { seed: 11 }, ({ device, dtypes, it }) => {
  // [N, Hd, V, chunk (undefined: the default), T]
  const CASES: Array<[number, number, number, number | undefined, number]> = [
    [1, 3, 1, 1, 1], [4, 5, 37, 8, 0.7], [3, 7, 20, 64, 1.3], [6, 9, 50, 1, 1], [13, 16, 300, undefined, 1],
    [5, 24, 1000, 128, 0.7],
  ];

  for (const dtype of dtypes) {
    it(`${dtype}: forward and backward against float64 (odd sizes, chunk edge cases)`, async (e) => {
      const next = rng(`linear-token-stats-${device}-${dtype}`);
      for (const [n, hd, v, chunk, t] of CASES) {
        for (const withEntropy of [false, true]) {
          // logits of spread ≈ 4 (hidden ~ U(−1, 1)·2, weight ~ U(−1, 1)·3/√Hd)
          using hidden = e.tensor(scaled(randomArray(n * hd, next), 2), [n, hd], { dtype });
          using weight = e.tensor(scaled(randomArray(v * hd, next), 3 / Math.sqrt(hd)), [v, hd], { dtype });
          using upstream = randomUpstream(e, n, v, withEntropy, next);
          const { targets, dl, de, tt, tdl, tde } = upstream;
          const opts = { temperature: t, ...(chunk === undefined ? {} : { chunk }) };
          const stats = ops.linearTokenStats(hidden, weight, tt, opts);
          using lp = stats.logprobs;
          using ent = stats.entropy;
          const grads = ops.linearTokenStatsBackward(hidden, weight, tt, tdl, tde, opts);
          using dh = grads.dHidden;
          using dw = grads.dWeight;
          assert.deepEqual(dh.shape, [n, hd]);
          assert.deepEqual(dw.shape, [v, hd]);
          assert.equal(dw.dtype, dtype);

          const h = await hidden.toArray();
          const w = await weight.toArray();
          const z = linearLogits(h, w, n, hd, v);
          const ref = softmaxStats(z, n, v, targets, t);
          const refGrads = linearGradients(softmaxStatsGradient(z, n, v, targets, dl, de, t), h, w, n, hd, v);
          const errs = {
            logp: relativeError(await lp.toArray(), ref.logp),
            ent: relativeError(await ent.toArray(), ref.entropy),
            dHidden: relativeError(await dh.toArray(), refGrads.dHidden),
            dWeight: relativeError(await dw.toArray(), refGrads.dWeight),
          };
          const what = `[N ${n}, Hd ${hd}, V ${v}] chunk ${chunk} T=${t} dEntropy ${withEntropy}: ${JSON.stringify(errs)}`;
          assert.ok(Object.values(errs).every((x) => x <= tol(dtype)), what);
        }
      }
    });

    it(`${dtype}: equals tokenStats of the materialised matmul`, async (e) => {
      const next = rng(`linear-token-stats-eq-${device}-${dtype}`);
      const [n, hd, v] = [9, 33, 517];
      using hidden = e.tensor(scaled(randomArray(n * hd, next), 2), [n, hd], { dtype });
      using weight = e.tensor(scaled(randomArray(v * hd, next), 0.5), [v, hd], { dtype });
      using tt = e.tensor<'i32'>(randomInts(n, v, next), [n]);
      using tdl = e.tensor(randomArray(n, next), [n]);
      using tde = e.tensor(randomArray(n, next), [n]);
      using logits = ops.matmul(hidden, weight, { transB: true });
      const want = ops.tokenStats(logits, tt, { temperature: 0.7 });
      const got = ops.linearTokenStats(hidden, weight, tt, { temperature: 0.7, chunk: 100 });
      using a = want.logprobs;
      using b = want.entropy;
      using c = got.logprobs;
      using d = got.entropy;
      const close = dtype === 'f32' ? 1e-5 : 2e-2;
      assert.ok(relativeError(await c.toArray(), await a.toArray()) <= close);
      assert.ok(relativeError(await d.toArray(), await b.toArray()) <= close);
      // backward: dHidden = dLogits·W and dWeight = dLogitsᵀ·hidden
      using dz = ops.tokenStatsBackward(logits, tt, tdl, tde, { temperature: 0.7 });
      using dh = ops.matmul(dz, weight);
      using dw = ops.matmul(dz, hidden, { transA: true });
      const g = ops.linearTokenStatsBackward(hidden, weight, tt, tdl, tde, { temperature: 0.7, chunk: 100 });
      using gh = g.dHidden;
      using gw = g.dWeight;
      assert.ok(relativeError(await gh.toArray(), await dh.toArray()) <= close * 10);
      assert.ok(relativeError(await gw.toArray(), await dw.toArray()) <= close * 10);
    });
  }

  it('backward matches central finite differences of the float64 loss (hidden and weight)', async (e) => {
    const next = rng(`linear-token-stats-fd-${device}`);
    for (const [n, hd, v, chunk] of [[3, 4, 9, 4], [2, 6, 13, 100]] as Array<[number, number, number, number]>) {
      const h = scaled(randomArray(n * hd, next), 2);
      const w = scaled(randomArray(v * hd, next), 1);
      const targets = randomInts(n, v, next);
      const w1 = randomArray(n, next);
      const w2 = randomArray(n, next);
      const dirH = randomArray(n * hd, next);
      const dirW = randomArray(v * hd, next);
      using hidden = e.tensor(h, [n, hd]);
      using weight = e.tensor(w, [v, hd]);
      using tt = e.tensor<'i32'>(targets, [n]);
      using tw1 = e.tensor(w1, [n]);
      using tw2 = e.tensor(w2, [n]);
      const g = ops.linearTokenStatsBackward(hidden, weight, tt, tw1, tw2, { temperature: 0.8, chunk });
      using dh = g.dHidden;
      using dw = g.dWeight;
      const fd = centralDifferenceAlong(
        ([hp, wp]) => referenceLoss(linearLogits(hp!, wp!, n, hd, v), n, v, targets, w1, w2, 0.8), [h, w], [dirH, dirW], 1e-5);
      const analytic = dot(await dh.toArray(), dirH) + dot(await dw.toArray(), dirW);
      assert.ok(Math.abs(analytic - fd) <= 1e-4 * Math.max(1, Math.abs(fd)), `[${n}, ${hd}, ${v}]: ${analytic} vs ${fd}`);
    }
  });

  it('never materialises [N, V]: peak extra memory stays O(N·chunk)', async () => {
    const m = Engine.create({ device, seed: 3 });
    try {
      const [n, hd, v, chunk] = [128, 8, 60000, 256];
      const next = rng(`linear-token-stats-mem-${device}`);
      using hidden = m.tensor(randomArray(n * hd, next), [n, hd]);
      using weight = m.tensor(randomArray(v * hd, next), [v, hd]);
      using tt = m.tensor<'i32'>(randomInts(n, v, next), [n]);
      using tdl = m.tensor(randomArray(n, next), [n]);
      using tde = m.tensor(randomArray(n, next), [n]);
      await m.synchronize();
      // Bytes an allocation is accounted as: exact on the CPU; the CUDA caching allocator
      // rounds up (512 B, or 2 MiB above 1 MiB) and may hand out a cached block up to twice that.
      const held = (bytes: number): number => {
        if (device === 'cpu') return bytes;
        const granularity = bytes <= 2 ** 20 ? 512 : 2 * 2 ** 20;
        return 2 * Math.ceil(bytes / granularity) * granularity;
      };
      const logitsBytes = n * v * 4;
      const cpuThreads = devices().flatMap((d) => (d.kind === 'cpu' ? [d.threads] : []))[0]!;
      // scratch: the chunk's logits, the row statistics, per-thread rows, an [N, Hd] GEMM product
      const scratch = held(n * chunk * 4) + held(4 * n * 4) + held(cpuThreads * chunk * 4) + held(n * hd * 4) + 64 * 1024;
      const extraPeak = async (read: () => Promise<unknown>): Promise<number> => {
        await m.synchronize();
        const before = m.memoryStats().allocatedBytes;
        m.resetPeakMemory();
        await read();
        return m.memoryStats().peakBytes - before;
      };

      const stats = ops.linearTokenStats(hidden, weight, tt, { chunk });
      using lp = stats.logprobs;
      using ent = stats.entropy;
      const forwardExtra = await extraPeak(() => Promise.all([lp.toArray(), ent.toArray()]));
      const forwardBound = 2 * held(n * 4) + scratch;
      assert.ok(forwardExtra <= forwardBound, `forward extra ${forwardExtra} > ${forwardBound}`);

      const g = ops.linearTokenStatsBackward(hidden, weight, tt, tdl, tde, { chunk });
      using dh = g.dHidden;
      using dw = g.dWeight;
      const backwardExtra = await extraPeak(() => Promise.all([dh.toArray(), dw.toArray()]));
      const backwardBound = held(n * hd * 4) + held(v * hd * 4) + scratch;
      assert.ok(backwardExtra <= backwardBound, `backward extra ${backwardExtra} > ${backwardBound}`);
      assert.ok(backwardBound < logitsBytes / 4, `bound ${backwardBound} vs the logits' ${logitsBytes}`);
    } finally {
      m.dispose();
    }
  });

  it('an empty batch gives empty statistics and a zero weight gradient', async (e) => {
    using hidden = e.zeros([0, 4]);
    using weight = e.randn([6, 4]);
    using tt = e.tensor<'i32'>(new Int32Array(0), [0]);
    using d0 = e.zeros([0]);
    const stats = ops.linearTokenStats(hidden, weight, tt);
    using lp = stats.logprobs;
    using ent = stats.entropy;
    assert.equal((await lp.toArray()).length, 0);
    assert.equal((await ent.toArray()).length, 0);
    const g = ops.linearTokenStatsBackward(hidden, weight, tt, d0, d0);
    using dh = g.dHidden;
    using dw = g.dWeight;
    assert.deepEqual(dh.shape, [0, 4]);
    assert.deepEqual(Array.from(await dw.toArray()), new Array(24).fill(0));
  });

  it('a target outside [0, V) makes the readback reject naming targets', async (e) => {
    using hidden = e.randn([3, 4]);
    using weight = e.randn([5, 4]);
    using tt = e.tensor<'i32'>(new Int32Array([0, 1, 5]), [3]);
    const stats = ops.linearTokenStats(hidden, weight, tt, { chunk: 2 });
    using lp = stats.logprobs;
    using ent = stats.entropy;
    const pattern = device === 'cpu' ? /linearTokenStats: targets\[2\] = 5/ : /targets/;
    await expectR1VRejection(lp.toArray(), 'ARGUMENT', pattern);
    await expectPoisonedRow(ent, 2, pattern);
    using ones = e.ones([3]);
    const g = ops.linearTokenStatsBackward(hidden, weight, tt, ones, ones, { chunk: 2 });
    using dh = g.dHidden;
    using dw = g.dWeight;
    const backwardPattern = device === 'cpu' ? /linearTokenStatsBackward: targets\[2\]/ : /targets/;
    await expectR1VRejection(dh.toArray(), 'ARGUMENT', backwardPattern);
    if (device === 'cpu') await expectR1VRejection(dw.toArray(), 'ARGUMENT', backwardPattern);
    else assert.ok((await dw.toArray()).some(Number.isNaN), 'dWeight carries the NaN row of dZ');
    await e.synchronize().catch(() => undefined);
  });

  it('rejects bad arguments, naming them', (e) => {
    using hidden = e.randn([3, 4]);
    using weight = e.randn([5, 4]);
    using tt = e.tensor<'i32'>(new Int32Array([0, 1, 2]), [3]);
    using d3 = e.zeros([3]);
    expectR1VError(() => ops.linearTokenStats(e.randn([12]), weight, tt), 'SHAPE', /hidden/);
    expectR1VError(() => ops.linearTokenStats(hidden, e.randn([5, 3]), tt), 'SHAPE', /weight/);
    expectR1VError(() => ops.linearTokenStats(hidden, e.randn([20]), tt), 'SHAPE', /weight/);
    expectR1VError(() => ops.linearTokenStats(hidden, e.zeros([0, 4]), tt), 'SHAPE', /weight/);
    expectR1VError(() => ops.linearTokenStats(hidden, weight, e.tensor<'i32'>(new Int32Array(2), [2])), 'SHAPE', /targets/);
    expectR1VError(() => ops.linearTokenStats(hidden, weight, d3 as unknown as Tensor<'i32'>), 'DTYPE', /targets/);
    for (const chunk of [0, -3, 1.5, NaN]) {
      expectR1VError(() => ops.linearTokenStats(hidden, weight, tt, { chunk }), 'ARGUMENT', /chunk/);
    }
    expectR1VError(() => ops.linearTokenStats(hidden, weight, tt, { temperature: -0.5 }), 'ARGUMENT', /temperature/);
    expectR1VError(() => ops.linearTokenStats(hidden, weight, tt, { chunks: 4 } as never), 'ARGUMENT', /chunks/);
    expectR1VError(() => ops.linearTokenStatsBackward(hidden, weight, tt, e.zeros([2]), d3), 'SHAPE', /dLogprobs/);
    expectR1VError(() => ops.linearTokenStatsBackward(hidden, weight, tt, d3, d3, { chunk: 0 }), 'ARGUMENT', /chunk/);
    const other = Engine.create({ device });
    try {
      expectR1VError(() => ops.linearTokenStats(hidden, other.randn([5, 4]), tt), 'DEVICE', /weight/);
      expectR1VError(() => ops.linearTokenStatsBackward(hidden, weight, tt, d3, other.zeros([3])), 'DEVICE', /dEntropy/);
    } finally {
      other.dispose();
    }
    if (device === 'cpu') {
      expectR1VError(() => ops.linearTokenStats(e.randn([3, 4], { dtype: 'bf16' }), e.randn([5, 4], { dtype: 'bf16' }), tt),
        'DTYPE', /hidden/);
    } else {
      expectR1VError(() => ops.linearTokenStats(hidden, e.randn([5, 4], { dtype: 'bf16' }), tt), 'DTYPE', /weight/);
    }
  });
});

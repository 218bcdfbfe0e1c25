import assert from 'node:assert/strict';

import { Engine, ops, type Tensor } from '../lib/index.js';
import { expectR1VError, forEachDevice, randomArray, relativeError, rng, scaled } from './helpers.js';

// ---- float64 references, written from torch.optim.AdamW's definition ----

interface RefState {
  p: Float64Array;
  m: Float64Array;
  v: Float64Array;
}

interface RefOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  wd: number;
  step: number;
  scale: number;
}

/** One AdamW step in float64: decay p, update the moments, bias-correct, divide. */
function referenceAdamW(s: RefState, grad: ArrayLike<number>, o: RefOptions): void {
  const bc1 = 1 - o.beta1 ** o.step;
  const bc2 = 1 - o.beta2 ** o.step;
  for (let i = 0; i < s.p.length; i++) {
    const g = grad[i]! * o.scale;
    s.p[i] = s.p[i]! * (1 - o.lr * o.wd);
    s.m[i] = o.beta1 * s.m[i]! + (1 - o.beta1) * g;
    s.v[i] = o.beta2 * s.v[i]! + (1 - o.beta2) * g * g;
    const mHat = s.m[i]! / bc1;
    const vHat = s.v[i]! / bc2;
    s.p[i] = s.p[i]! - (o.lr * mHat) / (Math.sqrt(vHat) + o.eps);
  }
}

function referenceSumOfSquares(arrays: ArrayLike<number>[]): number {
  let sum = 0;
  for (const a of arrays) for (let i = 0; i < a.length; i++) sum += a[i]! * a[i]!;
  return sum;
}

function scaledArray(n: number, next: () => number, scale: number): Float32Array {
  return scaled(randomArray(n, next), scale);
}

/** Non-negative second moments, as AdamW keeps them. */
function positiveArray(n: number, next: () => number, scale: number): Float32Array {
  return randomArray(n, next).map((x) => (Math.abs(x) + 0.01) * scale);
}

forEachDevice('adamwStep', { seed: 11 }, ({ device, it }) => {
  it('one step against hand-computed numbers (step 1 from zero state; step 3 with state and a scale)', async (e) => {
    using p = e.tensor(new Float32Array([0.5, -2]), [2]);
    using g = e.tensor(new Float32Array([0.2, -0.04]), [2]);
    using m = e.zeros([2]);
    using v = e.zeros([2]);
    ops.adamwStep([{ param: p, grad: g, m, v }], { lr: 0.1, step: 1, weightDecay: 0.1 });
    // p ← 0.99·p; m = 0.1·g; v = 0.001·g²; m̂ = g, √v̂ = |g|; p −= 0.1·g/(|g| + 1e-8).
    const want = [0.495 - 0.1 * 0.2 / (0.2 + 1e-8), -1.98 + 0.1 * 0.04 / (0.04 + 1e-8)];
    assert.ok(Math.abs(want[0]! - 0.395000005) < 1e-12 && Math.abs(want[1]! + 1.880000025) < 1e-12);
    assert.ok(relativeError(await p.toArray(), want) <= 1e-7, `${await p.toArray()}`);
    assert.ok(relativeError(await m.toArray(), [0.02, -0.004]) <= 1e-7);
    assert.ok(relativeError(await v.toArray(), [4e-5, 1.6e-6]) <= 1e-6);

    // p = 1.25, g = −0.5 scaled by 0.5, m = 0.1, v = 0.04, β = (0.8, 0.99), eps 1e-3, lr 0.05, wd 0.2:
    // p → 1.2375; m = 0.08 − 0.05 = 0.03; v = 0.0396 + 0.01·0.0625 = 0.040225;
    // m̂ = 0.03 / 0.488, v̂ = 0.040225 / 0.029701; p = 1.2375 − 0.05·m̂/(√v̂ + 1e-3) = 1.234861021…
    using p2 = e.tensor(new Float32Array([1.25]), [1]);
    using g2 = e.tensor(new Float32Array([-0.5]), [1]);
    using m2 = e.tensor(new Float32Array([0.1]), [1]);
    using v2 = e.tensor(new Float32Array([0.04]), [1]);
    ops.adamwStep([{ param: p2, grad: g2, m: m2, v: v2, weightDecay: 0.2 }],
      { lr: 0.05, step: 3, beta1: 0.8, beta2: 0.99, eps: 1e-3, weightDecay: 0, gradScale: 0.5 });
    assert.ok(Math.abs((await p2.toArray())[0]! - 1.234861021) <= 1e-6, `${await p2.toArray()}`);
    assert.ok(Math.abs((await m2.toArray())[0]! - 0.03) <= 1e-7);
    assert.ok(Math.abs((await v2.toArray())[0]! - 0.040225) <= 1e-7);
  });

  for (const scaleKind of ['none', 'number', 'tensor'] as const) {
    it(`f32: five steps over groups of odd sizes against float64, weight decay per group, gradScale ${scaleKind}`, async (e) => {
      const next = rng(`adamw-steps-${device}-${scaleKind}`);
      const sizes = [1, 7, 1000, 8195, 33];
      // undefined: the option's weightDecay (0.05); 0: a norm/bias group.
      const decays = [undefined, 0, 0.1, undefined, 0];
      const refs: RefState[] = sizes.map((n) => ({
        p: Float64Array.from(randomArray(n, next)), m: new Float64Array(n), v: new Float64Array(n),
      }));
      const params = refs.map((r) => e.tensor(Float32Array.from(r.p), [r.p.length]));
      const ms = sizes.map((n) => e.zeros([n]));
      const vs = sizes.map((n) => e.zeros([n]));
      const scale = scaleKind === 'none' ? 1 : 0.37;
      using scaleTensor = e.tensor(new Float32Array([scale]), [1]);
      try {
        for (let step = 1; step <= 5; step++) {
          const grads = sizes.map((n) => scaledArray(n, next, 2));
          const gradTensors = grads.map((g, i) => e.tensor(g, [sizes[i]!]));
          const base = { lr: 0.01, beta1: 0.9, beta2: 0.95, eps: 1e-6, weightDecay: 0.05, step };
          ops.adamwStep(
            sizes.map((_, i) => ({
              param: params[i]!, grad: gradTensors[i]!, m: ms[i]!, v: vs[i]!,
              ...(decays[i] === undefined ? {} : { weightDecay: decays[i] }),
            })),
            scaleKind === 'none' ? base : { ...base, gradScale: scaleKind === 'number' ? scale : scaleTensor },
          );
          for (const t of gradTensors) t.dispose();
          refs.forEach((r, i) => referenceAdamW(r, grads[i]!, { ...base, wd: decays[i] ?? 0.05, scale }));
        }
        for (let i = 0; i < sizes.length; i++) {
          const errs = [
            relativeError(await params[i]!.toArray(), refs[i]!.p),
            relativeError(await ms[i]!.toArray(), refs[i]!.m),
            relativeError(await vs[i]!.toArray(), refs[i]!.v),
          ];
          assert.ok(errs.every((x) => x <= 1e-5), `group ${i} [${sizes[i]}]: p, m, v errors ${errs}`);
        }
      } finally {
        for (const t of [...params, ...ms, ...vs]) t.dispose();
      }
    });
  }

  it('weight decay: 0 leaves a zero-gradient param unchanged, wd shrinks it by lr·wd', async (e) => {
    using p0 = e.tensor(new Float32Array([1, -2, 3]), [3]);
    using p1 = e.tensor(new Float32Array([1, -2, 3]), [3]);
    using g0 = e.zeros([3]);
    using g1 = e.zeros([3]);
    using m0 = e.zeros([3]);
    using m1 = e.zeros([3]);
    using v0 = e.zeros([3]);
    using v1 = e.zeros([3]);
    ops.adamwStep([{ param: p0, grad: g0, m: m0, v: v0, weightDecay: 0 }, { param: p1, grad: g1, m: m1, v: v1 }],
      { lr: 0.1, step: 1, weightDecay: 0.5 });
    assert.deepEqual(Array.from(await p0.toArray()), [1, -2, 3]);
    assert.ok(relativeError(await p1.toArray(), [0.95, -1.9, 2.85]) <= 1e-7);
  });

  it('f32 master weights: the update goes to master and param is its copy; state in f32', async (e) => {
    const next = rng(`adamw-master-${device}`);
    const n = 517;
    const ref: RefState = { p: Float64Array.from(randomArray(n, next)), m: new Float64Array(n), v: new Float64Array(n) };
    using master = e.tensor(Float32Array.from(ref.p), [n]);
    using param = e.tensor(Float32Array.from(ref.p), [n]);
    using m = e.zeros([n]);
    using v = e.zeros([n]);
    for (let step = 1; step <= 3; step++) {
      const g = randomArray(n, next);
      using grad = e.tensor(g, [n]);
      ops.adamwStep([{ param, grad, m, v, master }], { lr: 0.02, step, weightDecay: 0.1 });
      referenceAdamW(ref, g, { lr: 0.02, beta1: 0.9, beta2: 0.999, eps: 1e-8, wd: 0.1, step, scale: 1 });
    }
    assert.ok(relativeError(await master.toArray(), ref.p) <= 1e-5);
    assert.deepEqual(await param.toArray(), await master.toArray());
  });

  if (device !== 'cpu') {
    for (const dtype of ['bf16', 'f16'] as const) {
      it(`${dtype} params with f32 master against float64 (param 2e-2, master 1e-5) @cuda`, async (e) => {
        const next = rng(`adamw-${dtype}-master-${device}`);
        const sizes = [3, 2049, 100];
        const refs = sizes.map((n) => ({ p: Float64Array.from(randomArray(n, next)), m: new Float64Array(n), v: new Float64Array(n) }));
        const masters = refs.map((r) => e.tensor(Float32Array.from(r.p), [r.p.length]));
        const params = refs.map((r) => e.tensor(Float32Array.from(r.p), [r.p.length], { dtype }));
        const ms = sizes.map((n) => e.zeros([n]));
        const vs = sizes.map((n) => e.zeros([n]));
        try {
          for (let step = 1; step <= 3; step++) {
            const grads = sizes.map((n) => e.tensor(randomArray(n, next), [n], { dtype }));
            const opts = { lr: 0.01, step, weightDecay: 0.1 };
            ops.adamwStep(sizes.map((_, i) => ({ param: params[i]!, grad: grads[i]!, m: ms[i]!, v: vs[i]!, master: masters[i]! })), opts);
            // The reference sees the rounded gradients the kernel read.
            for (let i = 0; i < sizes.length; i++) {
              referenceAdamW(refs[i]!, await grads[i]!.toArray(), { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, wd: 0.1, step, scale: 1 });
            }
            for (const g of grads) g.dispose();
          }
          for (let i = 0; i < sizes.length; i++) {
            const masterErr = relativeError(await masters[i]!.toArray(), refs[i]!.p);
            const paramErr = relativeError(await params[i]!.toArray(), refs[i]!.p);
            assert.ok(masterErr <= 1e-5 && paramErr <= 2e-2, `group ${i}: master ${masterErr}, param ${paramErr}`);
          }
        } finally {
          for (const t of [...masters, ...params, ...ms, ...vs]) t.dispose();
        }
      });

      it(`${dtype} params without master: one step against float64 (2e-2) @cuda`, async (e) => {
        const next = rng(`adamw-${dtype}-plain-${device}`);
        const n = 3001;
        using param = e.tensor(randomArray(n, next), [n], { dtype });
        using grad = e.tensor(randomArray(n, next), [n], { dtype });
        using m = e.tensor(scaledArray(n, next, 0.1), [n]);
        using v = e.tensor(positiveArray(n, next, 0.01), [n]);
        const ref: RefState = {
          p: Float64Array.from(await param.toArray()), m: Float64Array.from(await m.toArray()), v: Float64Array.from(await v.toArray()),
        };
        const g = await grad.toArray();
        ops.adamwStep([{ param, grad, m, v }], { lr: 0.01, step: 4, weightDecay: 0.1, gradScale: 0.5 });
        referenceAdamW(ref, g, { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, wd: 0.1, step: 4, scale: 0.5 });
        assert.ok(relativeError(await param.toArray(), ref.p) <= 2e-2);
        assert.ok(relativeError(await m.toArray(), ref.m) <= 1e-5 && relativeError(await v.toArray(), ref.v) <= 1e-5);
      });
    }
  }

  it('bad input: R1VError naming the argument, and nothing is updated', async (e) => {
    using p = e.tensor(new Float32Array([1, 2, 3]), [3]);
    using g = e.tensor(new Float32Array([0.5, 0.5, 0.5]), [3]);
    using m = e.zeros([3]);
    using v = e.zeros([3]);
    using m16 = e.zeros([3], { dtype: 'i32' });
    using short = e.zeros([2]);
    using gi = e.zeros([3], { dtype: 'i32' });
    using scale2 = e.zeros([2]);
    const ok = { param: p, grad: g, m, v };
    const o = { lr: 0.1, step: 1 };
    expectR1VError(() => ops.adamwStep([ok, { ...ok, m: m16 as unknown as Tensor<'f32'> }], o), 'DTYPE', /adamwStep: groups\[1\]\.m must be f32/);
    expectR1VError(() => ops.adamwStep([{ ...ok, v: short }], o), 'SHAPE', /groups\[0\]\.v has shape \[2\]/);
    expectR1VError(() => ops.adamwStep([{ ...ok, master: short }], o), 'SHAPE', /groups\[0\]\.master/);
    expectR1VError(() => ops.adamwStep([{ ...ok, grad: short }], o), 'SHAPE', /groups\[0\]\.grad/);
    expectR1VError(() => ops.adamwStep([{ ...ok, grad: gi as unknown as Tensor<'f32'> }], o), 'DTYPE', /groups\[0\]\.grad/);
    expectR1VError(() => ops.adamwStep([ok], { lr: 0.1, step: 0 }), 'ARGUMENT', /step must be an integer/);
    expectR1VError(() => ops.adamwStep([ok], { lr: 0.1, step: 1.5 }), 'ARGUMENT', /step/);
    expectR1VError(() => ops.adamwStep([ok], { lr: -1, step: 1 }), 'ARGUMENT', /lr/);
    expectR1VError(() => ops.adamwStep([ok], { ...o, beta1: 1 }), 'ARGUMENT', /beta1 must be in \[0, 1\)/);
    expectR1VError(() => ops.adamwStep([ok], { ...o, beta2: -0.1 }), 'ARGUMENT', /beta2/);
    expectR1VError(() => ops.adamwStep([ok], { ...o, eps: 0 }), 'ARGUMENT', /eps/);
    expectR1VError(() => ops.adamwStep([ok], { ...o, weightDecay: -1 }), 'ARGUMENT', /weightDecay/);
    expectR1VError(() => ops.adamwStep([{ ...ok, weightDecay: -1 }], o), 'ARGUMENT', /groups\[0\]\.weightDecay/);
    expectR1VError(() => ops.adamwStep([ok], { ...o, gradScale: -2 }), 'ARGUMENT', /gradScale/);
    expectR1VError(() => ops.adamwStep([ok], { ...o, gradScale: scale2 }), 'SHAPE', /gradScale/);
    expectR1VError(() => ops.adamwStep([ok], { step: 1 } as never), 'ARGUMENT', /lr is required/);
    expectR1VError(() => ops.adamwStep([ok], { ...o, lrr: 1 } as never), 'ARGUMENT', /unknown option 'lrr'/);
    expectR1VError(() => ops.adamwStep([{ ...ok, mm: m } as never], o), 'ARGUMENT', /groups\[0\]: unknown option 'mm'/);
    expectR1VError(() => ops.adamwStep([{ ...ok, v: m }], o), 'ARGUMENT', /groups\[0\]\.v is the same tensor as groups\[0\]\.m/);
    expectR1VError(() => ops.adamwStep([ok, ok], o), 'ARGUMENT', /groups\[1\]\.param is the same tensor as groups\[0\]\.param/);
    expectR1VError(() => ops.adamwStep([{ ...ok, grad: p }], o), 'ARGUMENT', /groups\[0\]\.grad is the same tensor/);
    expectR1VError(() => ops.adamwStep([{ ...ok, param: undefined as never }], o), 'ARGUMENT', /groups\[0\]\.param must be a Tensor/);
    const other = Engine.create({ device: 'cpu', seed: 1 });
    try {
      using foreign = other.zeros([3]);
      expectR1VError(() => ops.adamwStep([{ ...ok, m: foreign }], o), 'DEVICE', /groups\[0\]\.m/);
    } finally {
      other.dispose();
    }
    if (device === 'cpu') {
      using pb = e.zeros([3], { dtype: 'bf16' });
      expectR1VError(() => ops.adamwStep([{ ...ok, param: pb, grad: pb }], o), 'DTYPE', /groups\[0\]\.param is bf16/);
    }
    const gone = e.zeros([3]);
    gone.dispose();
    expectR1VError(() => ops.adamwStep([{ ...ok, m: gone }], o), 'DISPOSED');
    assert.deepEqual(Array.from(await p.toArray()), [1, 2, 3]);
    assert.deepEqual(Array.from(await m.toArray()), [0, 0, 0]);
    ops.adamwStep([], o);  // no groups: nothing to do
  });
});

forEachDevice('sumOfSquares', { seed: 5 }, ({ device, dtypes, it }) => {
  for (const dtype of dtypes) {
    it(`${dtype}: odd sizes and an empty tensor against float64; same bits twice`, async (e) => {
      const next = rng(`sum-of-squares-${device}-${dtype}`);
      const sizes = [1, 0, 7, 16385, 1000, 40000];
      const tensors = sizes.map((n) => e.tensor(scaledArray(n, next, 3), [n], { dtype }));
      try {
        const ref = referenceSumOfSquares(await Promise.all(tensors.map((t) => t.toArray())));
        using s = ops.sumOfSquares(tensors);
        using again = ops.sumOfSquares(tensors);
        assert.deepEqual(s.shape, [1]);
        assert.equal(s.dtype, 'f32');
        const got = await s.toArray();
        assert.ok(relativeError(got, [ref]) <= (device === 'cpu' ? 1e-6 : 1e-5), `${got[0]} vs ${ref}`);
        assert.deepEqual(await again.toArray(), got);
      } finally {
        for (const t of tensors) t.dispose();
      }
    });
  }

  it('only empty tensors: 0, not the poison', async (e) => {
    using a = e.zeros([0]);
    using b = e.zeros([4, 0]);
    using s = ops.sumOfSquares([a, b]);
    assert.deepEqual(Array.from(await s.toArray()), [0]);
  });

  it('gradScale as a tensor: the clip factor 1/‖g‖ scales the gradient', async (e) => {
    // The step reads a tensor gradScale when it runs: the factor may come from queued work.
    using p = e.tensor(new Float32Array([1, 1]), [2]);
    using g = e.tensor(new Float32Array([3, 4]), [2]);
    using m = e.zeros([2]);
    using v = e.zeros([2]);
    using sq = ops.sumOfSquares([g]);
    assert.deepEqual(Array.from(await sq.toArray()), [25]);
    using clip = e.tensor(new Float32Array([1 / Math.sqrt((await sq.toArray())[0]!)]), [1]);
    ops.adamwStep([{ param: p, grad: g, m, v }], { lr: 0.1, step: 1, weightDecay: 0, gradScale: clip });
    assert.ok(relativeError(await m.toArray(), [0.06, 0.08]) <= 1e-6);
  });

  it('bad input: R1VError naming the tensor', (e) => {
    using i = e.zeros([3], { dtype: 'i32' });
    using f = e.zeros([3]);
    expectR1VError(() => ops.sumOfSquares([]), 'ARGUMENT', /at least one/);
    expectR1VError(() => ops.sumOfSquares([f, i as unknown as Tensor<'f32'>]), 'DTYPE', /sumOfSquares: tensors\[1\]/);
    expectR1VError(() => ops.sumOfSquares([f, 3 as never]), 'ARGUMENT', /tensors\[1\] must be a Tensor/);
    const other = Engine.create({ device: 'cpu', seed: 1 });
    try {
      using foreign = other.zeros([3]);
      expectR1VError(() => ops.sumOfSquares([f, foreign]), 'DEVICE', /tensors\[1\]/);
    } finally {
      other.dispose();
    }
  });
});

import assert from 'node:assert/strict';

import { Engine, type FloatDType, ops, type Tensor } from '../lib/index.js';
import {
  expectR1VError, expectR1VRejection, forEachDevice, randomArray, randomInts, relativeError, rng, scaled,
} from './helpers.js';
import { centralDifferenceAlong } from './reference/diff.js';
import { ropeReference } from './reference/layers.js';
import { dot, gelu, geluDerivative, sigmoid } from './reference/math.js';

// ---- float64 references, written from the definitions ----

function referenceSwiglu(g: ArrayLike<number>, u: ArrayLike<number>): Float64Array {
  return Float64Array.from({ length: g.length }, (_, i) => g[i]! * sigmoid(g[i]!) * u[i]!);
}

function referenceSwigluBackward(g: ArrayLike<number>, u: ArrayLike<number>, dy: ArrayLike<number>): { dGate: Float64Array; dUp: Float64Array } {
  const n = g.length;
  const dGate = new Float64Array(n), dUp = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const s = sigmoid(g[i]!);
    dUp[i] = dy[i]! * g[i]! * s;
    dGate[i] = dy[i]! * u[i]! * s * (1 + g[i]! * (1 - s));
  }
  return { dGate, dUp };
}

function referenceGelu(z: ArrayLike<number>): Float64Array {
  return Float64Array.from(z, gelu);
}

function referenceGeluBackward(z: ArrayLike<number>, dy: ArrayLike<number>): Float64Array {
  return Float64Array.from({ length: z.length }, (_, i) => dy[i]! * geluDerivative(z[i]!));
}

function referenceEmbedding(ids: Int32Array, table: ArrayLike<number>, hidden: number): Float64Array {
  const out = new Float64Array(ids.length * hidden);
  ids.forEach((id, t) => {
    for (let j = 0; j < hidden; j++) out[t * hidden + j] = table[id * hidden + j]!;
  });
  return out;
}

function referenceEmbeddingBackward(ids: Int32Array, dy: ArrayLike<number>, vocab: number, hidden: number): Float64Array {
  const out = new Float64Array(vocab * hidden);
  ids.forEach((id, t) => {
    for (let j = 0; j < hidden; j++) out[id * hidden + j] = out[id * hidden + j]! + dy[t * hidden + j]!;
  });
  return out;
}

/**
 * Central difference of L(x) = Σ w·f(x) in the direction v, f a float64 reference, compared with
 * Σ v·grad where grad is the engine's backward for dY = w.
 */
function checkDirectional(f: (x: ArrayLike<number>) => ArrayLike<number>, x: Float32Array, w: Float32Array,
  v: Float32Array, grad: ArrayLike<number>, what: string): void {
  const fd = centralDifferenceAlong(([moved]) => dot(f(moved!), w), [x], [v], 1e-4);
  const analytic = dot(grad, v);
  assert.ok(Math.abs(analytic - fd) <= 1e-4 * Math.max(1, Math.abs(fd)), `${what}: ${analytic} vs ${fd}`);
}

const tol = (dtype: FloatDType): number => (dtype === 'f32' ? 1e-4 : 2e-2);

forEachDevice('elementwise ops', { seed: 11 }, ({ device, dtypes, it }) => {
  // [T, H, D, theta, max position]
  const ROPE_CASES: Array<[number, number, number, number, number]> = [
    [1, 1, 2, 10000, 10], [5, 3, 6, 10000, 100], [7, 2, 128, 1e6, 32768], [3, 5, 14, 500, 4000],
  ];

  for (const dtype of dtypes) {
    it(`${dtype}: rope and ropeBackward against float64, odd sizes, positions up to 32k`, async (e) => {
      const next = rng(`rope-${device}-${dtype}`);
      for (const [t, h, d, theta, maxPos] of ROPE_CASES) {
        const pos = randomInts(t, maxPos, next);
        using x = e.tensor(randomArray(t * h * d, next), [t, h, d], { dtype });
        using tp = e.tensor<'i32'>(pos, [t]);
        using y = ops.rope(x, tp, { theta });
        using dx = ops.ropeBackward(x, tp, { theta });
        assert.deepEqual(y.shape, [t, h, d]);
        assert.equal(y.dtype, dtype);
        const xv = await x.toArray();
        const errs = [relativeError(await y.toArray(), ropeReference(xv, pos, h, d, theta)),
          relativeError(await dx.toArray(), ropeReference(xv, pos, h, d, theta, -1))];
        assert.ok(errs[0]! <= tol(dtype) && errs[1]! <= tol(dtype), `[${t}, ${h}, ${d}] theta ${theta}: ${errs}`);
      }
    });

    it(`${dtype}: swiglu and swigluBackward against float64, odd sizes`, async (e) => {
      const next = rng(`swiglu-${device}-${dtype}`);
      for (const shape of [[1, 1], [3, 7], [13, 1031], [2, 3, 5]]) {
        const n = shape.reduce((a, b) => a * b, 1);
        using g = e.tensor(scaled(randomArray(n, next), 8), shape, { dtype });
        using u = e.tensor(scaled(randomArray(n, next), 2), shape, { dtype });
        using dyT = e.tensor(randomArray(n, next), shape, { dtype });
        using y = ops.swiglu(g, u);
        const grads = ops.swigluBackward(g, u, dyT);
        using dGate = grads.dGate;
        using dUp = grads.dUp;
        assert.deepEqual(y.shape, shape);
        assert.equal(dGate.dtype, dtype);
        const [gv, uv, dv] = [await g.toArray(), await u.toArray(), await dyT.toArray()];
        const ref = referenceSwigluBackward(gv, uv, dv);
        const errs = [relativeError(await y.toArray(), referenceSwiglu(gv, uv)),
          relativeError(await dGate.toArray(), ref.dGate), relativeError(await dUp.toArray(), ref.dUp)];
        assert.ok(errs.every((x) => x <= tol(dtype)), `${shape}: ${errs}`);
      }
    });

    it(`${dtype}: gelu and geluBackward against float64, odd sizes`, async (e) => {
      const next = rng(`gelu-${device}-${dtype}`);
      for (const shape of [[1, 1], [3, 7], [13, 1031], [2, 3, 5]]) {
        const n = shape.reduce((a, b) => a * b, 1);
        using z = e.tensor(scaled(randomArray(n, next), 8), shape, { dtype });
        using dyT = e.tensor(randomArray(n, next), shape, { dtype });
        using y = ops.gelu(z);
        using dz = ops.geluBackward(z, dyT);
        assert.deepEqual(dz.shape, shape);
        assert.equal(dz.dtype, dtype);
        const [zv, dv] = [await z.toArray(), await dyT.toArray()];
        const errs = [relativeError(await y.toArray(), referenceGelu(zv)),
          relativeError(await dz.toArray(), referenceGeluBackward(zv, dv))];
        assert.ok(errs.every((x) => x <= tol(dtype)), `${shape}: ${errs}`);
      }
    });

    it(`${dtype}: embedding and embeddingBackward against float64, repeated ids, unseen rows zero`, async (e) => {
      const next = rng(`embedding-${device}-${dtype}`);
      for (const [t, v, h] of [[1, 1, 1], [9, 5, 7], [37, 151, 67], [300, 3, 130]]) {
        const ids = randomInts(t!, v!, next);
        using table = e.tensor(randomArray(v! * h!, next), [v!, h!], { dtype });
        using dyT = e.tensor(randomArray(t! * h!, next), [t!, h!], { dtype });
        using ti = e.tensor<'i32'>(ids, [t!]);
        using out = ops.embedding(ti, table);
        using dTable = ops.embeddingBackward(ti, dyT, v!);
        assert.deepEqual(out.shape, [t, h]);
        assert.deepEqual(dTable.shape, [v, h]);
        assert.equal(dTable.dtype, dtype);
        const errs = [relativeError(await out.toArray(), referenceEmbedding(ids, await table.toArray(), h!)),
          relativeError(await dTable.toArray(), referenceEmbeddingBackward(ids, await dyT.toArray(), v!, h!))];
        assert.ok(errs.every((x) => x <= tol(dtype)), `[${t}, ${v}, ${h}]: ${errs}`);
      }
    });
  }

  it('rope keeps f32 accuracy at large positions and theta (angle formed in f64)', async (e) => {
    const next = rng(`rope-large-${device}`);
    const [t, h, d, theta] = [6, 2, 128, 1e6];
    const pos = new Int32Array([32767, 32000, 31999, 16384, 65535, 100000]);
    const x = randomArray(t * h * d, next);
    using tx = e.tensor(x, [t, h, d]);
    using tp = e.tensor<'i32'>(pos, [t]);
    using y = ops.rope(tx, tp, { theta });
    const got = await y.toArray();
    const ref = ropeReference(x, pos, h, d, theta);
    const worst = got.reduce((m, g, i) => Math.max(m, Math.abs(g - ref[i]!)), 0);
    assert.ok(worst <= 2e-6, `max abs error ${worst}`);
  });

  it('backwards match central finite differences of the float64 forwards', async (e) => {
    const next = rng(`elementwise-fd-${device}`);
    {
      const [t, h, d, theta] = [3, 2, 10, 10000];
      const pos = randomInts(t, 5000, next);
      const [x, w, v] = [randomArray(t * h * d, next), randomArray(t * h * d, next), randomArray(t * h * d, next)];
      using tw = e.tensor(w, [t, h, d]);
      using tp = e.tensor<'i32'>(pos, [t]);
      using dx = ops.ropeBackward(tw, tp, { theta });
      checkDirectional((z) => ropeReference(z, pos, h, d, theta), x, w, v, await dx.toArray(), 'rope');
    }
    {
      const n = 40;
      const [g, u, w] = [scaled(randomArray(n, next), 6), randomArray(n, next), randomArray(n, next)];
      const [vg, vu] = [randomArray(n, next), randomArray(n, next)];
      using tg = e.tensor(g, [4, 10]);
      using tu = e.tensor(u, [4, 10]);
      using tw = e.tensor(w, [4, 10]);
      const grads = ops.swigluBackward(tg, tu, tw);
      using dGate = grads.dGate;
      using dUp = grads.dUp;
      checkDirectional((z) => referenceSwiglu(z, u), g, w, vg, await dGate.toArray(), 'swiglu gate');
      checkDirectional((z) => referenceSwiglu(g, z), u, w, vu, await dUp.toArray(), 'swiglu up');
    }
    {
      const n = 30;
      const [z, w, v] = [scaled(randomArray(n, next), 6), randomArray(n, next), randomArray(n, next)];
      using tz = e.tensor(z, [3, 10]);
      using tw = e.tensor(w, [3, 10]);
      using dz = ops.geluBackward(tz, tw);
      checkDirectional((x) => referenceGelu(x), z, w, v, await dz.toArray(), 'gelu');
    }
    {
      const [t, vocab, h] = [11, 4, 3];
      const ids = randomInts(t, vocab, next);
      const [table, w, v] = [randomArray(vocab * h, next), randomArray(t * h, next), randomArray(vocab * h, next)];
      using ti = e.tensor<'i32'>(ids, [t]);
      using tw = e.tensor(w, [t, h]);
      using dTable = ops.embeddingBackward(ti, tw, vocab);
      checkDirectional((z) => referenceEmbedding(ids, z, h), table, w, v, await dTable.toArray(), 'embedding');
    }
  });

  it('empty inputs give empty outputs (embeddingBackward: zeros)', async (e) => {
    using x = e.zeros([0, 2, 4]);
    using tp = e.tensor<'i32'>(new Int32Array(0), [0]);
    using y = ops.rope(x, tp, { theta: 10000 });
    assert.equal((await y.toArray()).length, 0);
    using g = e.zeros([0, 3]);
    using s = ops.swiglu(g, g);
    assert.equal((await s.toArray()).length, 0);
    using table = e.randn([4, 3]);
    using out = ops.embedding(tp, table);
    assert.deepEqual(out.shape, [0, 3]);
    using dy = e.zeros([0, 3]);
    using dTable = ops.embeddingBackward(tp, dy, 4);
    assert.deepEqual(Array.from(await dTable.toArray()), new Array(12).fill(0));
  });

  it('an id outside [0, V) makes the readback reject naming ids; the engine goes on', async (e) => {
    using table = e.randn([9, 4]);
    for (const bad of [9, -1]) {
      using ti = e.tensor<'i32'>(new Int32Array([0, bad, 2, bad]), [4]);
      const pattern = device === 'cpu' ? new RegExp(`embedding: ids\\[1\\] = ${bad} is outside \\[0, 9\\)`) : /ids/;
      using out = ops.embedding(ti, table);
      await expectR1VRejection(out.toArray(), 'ARGUMENT', pattern);
      if (device !== 'cpu') {  // the device error was raised by the readback above; the rows are NaN
        const got = await out.toArray();
        assert.ok(got.every((x, i) => (Math.floor(i / 4) % 2 === 1) === Number.isNaN(x)), `${got}`);
      }
      using dy = e.randn([4, 4]);
      using dTable = ops.embeddingBackward(ti, dy, 9);
      await expectR1VRejection(dTable.toArray(), 'ARGUMENT', device === 'cpu' ? /embeddingBackward: ids\[1\]/ : /ids/);
    }
    await e.synchronize().catch(() => undefined);
    using ti = e.tensor<'i32'>(new Int32Array([8, 0]), [2]);
    using out = ops.embedding(ti, table);
    assert.ok((await out.toArray()).every(Number.isFinite));
  });

  it('rejects bad arguments, naming them', (e) => {
    using x = e.randn([3, 2, 4]);
    using tp = e.tensor<'i32'>(new Int32Array([0, 1, 2]), [3]);
    expectR1VError(() => ops.rope(e.randn([3, 8]), tp, { theta: 1e4 }), 'SHAPE', /rope: x must be 3-D/);
    expectR1VError(() => ops.rope(e.randn([3, 2, 5]), tp, { theta: 1e4 }), 'SHAPE', /rope: x must have an even head dim/);
    expectR1VError(() => ops.rope(x, e.tensor<'i32'>(new Int32Array(4), [4]), { theta: 1e4 }), 'SHAPE', /positions/);
    expectR1VError(() => ops.rope(x, e.zeros([3]) as unknown as Tensor<'i32'>, { theta: 1e4 }), 'DTYPE', /positions/);
    expectR1VError(() => ops.rope(e.tensor<'i32'>(new Int32Array(24), [3, 2, 4]) as never, tp, { theta: 1e4 }), 'DTYPE', /rope: x/);
    for (const theta of [0, -1, Infinity, NaN]) {
      expectR1VError(() => ops.rope(x, tp, { theta }), 'ARGUMENT', /rope: .*theta/);
    }
    expectR1VError(() => ops.rope(x, tp, undefined as never), 'ARGUMENT', /rope: options.theta is required/);
    expectR1VError(() => ops.ropeBackward(x, tp, { theta: 1e4, base: 2 } as never), 'ARGUMENT', /base/);
    expectR1VError(() => ops.ropeBackward(x, tp, {} as never), 'ARGUMENT', /ropeBackward: options.theta/);
    expectR1VError(() => ops.ropeBackward(e.randn([2, 2, 4]), tp, { theta: 1e4 }), 'SHAPE', /positions/);

    using g = e.randn([3, 5]);
    expectR1VError(() => ops.swiglu(g, e.randn([5, 3])), 'SHAPE', /swiglu: up/);
    expectR1VError(() => ops.swigluBackward(g, g, e.randn([3, 4])), 'SHAPE', /swigluBackward: dY/);
    expectR1VError(() => ops.geluBackward(g, e.randn([3, 4])), 'SHAPE', /geluBackward: dY/);
    expectR1VError(() => ops.swiglu(e.tensor<'i32'>(new Int32Array(15), [3, 5]) as never, g as never), 'DTYPE', /gate/);
    expectR1VError(() => ops.swiglu(g, e.tensor<'i32'>(new Int32Array(15), [3, 5]) as never), 'DTYPE', /up/);

    using table = e.randn([5, 4]);
    expectR1VError(() => ops.embedding(tp, e.randn([20])), 'SHAPE', /embedding: table/);
    expectR1VError(() => ops.embedding(tp, e.zeros([0, 4])), 'SHAPE', /table/);
    expectR1VError(() => ops.embedding(e.zeros([3]) as unknown as Tensor<'i32'>, table), 'DTYPE', /embedding: ids/);
    expectR1VError(() => ops.embedding(e.tensor<'i32'>(new Int32Array(4), [2, 2]), table), 'SHAPE', /ids/);
    expectR1VError(() => ops.embeddingBackward(tp, e.randn([4, 4]), 5), 'SHAPE', /embeddingBackward: dY/);
    expectR1VError(() => ops.embeddingBackward(tp, e.randn([3, 4]), 0), 'ARGUMENT', /embeddingBackward: V/);
    expectR1VError(() => ops.embeddingBackward(tp, e.randn([3, 4]), 2.5), 'ARGUMENT', /V/);
    const other = Engine.create({ device });
    try {
      expectR1VError(() => ops.rope(x, other.tensor<'i32'>(new Int32Array(3), [3]), { theta: 1e4 }), 'DEVICE', /positions/);
      expectR1VError(() => ops.swiglu(g, other.randn([3, 5])), 'DEVICE', /up/);
      expectR1VError(() => ops.embedding(tp, other.randn([5, 4])), 'DEVICE', /table/);
    } finally {
      other.dispose();
    }
    const gone = e.randn([3, 5]);
    gone.dispose();
    expectR1VError(() => ops.swiglu(gone, g), 'DISPOSED');
    if (device === 'cpu') {
      using b = e.randn([3, 2, 4], { dtype: 'bf16' });
      expectR1VError(() => ops.rope(b, tp, { theta: 1e4 }), 'DTYPE', /rope: x is bf16; the CPU computes in f32 only/);
      expectR1VError(() => ops.swiglu(b, b), 'DTYPE', /swiglu: gate/);
      expectR1VError(() => ops.embedding(tp, e.randn([5, 4], { dtype: 'f16' })), 'DTYPE', /embedding: table/);
    }
  });
});

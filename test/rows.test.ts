import assert from 'node:assert/strict';

import { Engine, type FloatDType, ops, R1VError } from '../lib/index.js';
import { expectR1VError, expectR1VRejection, forEachDevice, randomArray, randomInts, relativeError, rng, scaledError } from './helpers.js';
import { centralDifferenceAlong } from './reference/diff.js';
import { dot } from './reference/math.js';

// ---- float64 references, written from the definitions ----

/** a + b with b repeated over a's leading elements (b.length divides a.length). */
function referenceAdd(a: ArrayLike<number>, b: ArrayLike<number>): Float64Array {
  return Float64Array.from({ length: a.length }, (_, i) => a[i]! + b[i % b.length]!);
}

function referenceScaleChannels(x: ArrayLike<number>, s: ArrayLike<number>): Float64Array {
  return Float64Array.from({ length: x.length }, (_, i) => x[i]! * s[i % s.length]!);
}

/** Σ over rows of x [rows, c] (times w when given). */
function referenceColumnSums(x: ArrayLike<number>, c: number, w?: ArrayLike<number>): Float64Array {
  const out = new Float64Array(c);
  for (let i = 0; i < x.length; i++) out[i % c] = out[i % c]! + x[i]! * (w ? w[i]! : 1);
  return out;
}

function referenceGather(x: ArrayLike<number>, cols: number, idx: Int32Array): Float64Array {
  const out = new Float64Array(idx.length * cols);
  idx.forEach((r, m) => {
    for (let j = 0; j < cols; j++) out[m * cols + j] = x[r * cols + j]!;
  });
  return out;
}

function referenceScatterAdd(src: ArrayLike<number>, cols: number, idx: Int32Array, rows: number): Float64Array {
  const out = new Float64Array(rows * cols);
  idx.forEach((r, m) => {
    for (let j = 0; j < cols; j++) out[r * cols + j] = out[r * cols + j]! + src[m * cols + j]!;
  });
  return out;
}

function referenceScatter(base: ArrayLike<number>, cols: number, idx: Int32Array, src: ArrayLike<number>): Float64Array {
  const out = Float64Array.from(base);
  idx.forEach((r, m) => {
    for (let j = 0; j < cols; j++) out[r * cols + j] = src[m * cols + j]!;
  });
  return out;
}

/** v rounded to bf16 (round to nearest even on the f32 bits), as a number. */
function roundBf16(v: number): number {
  const f = new Float32Array([v]);
  const u = new Uint32Array(f.buffer);
  if (Number.isNaN(f[0]!)) return NaN;
  u[0] = ((u[0]! + 0x7fff + ((u[0]! >>> 16) & 1)) >>> 16) << 16;
  return f[0]!;
}

/** v rounded to f16 (round to nearest even, subnormals, overflow to ±Inf), as a number. */
function roundF16(v: number): number {
  if (!Number.isFinite(v) || v === 0) return v;
  const e = Math.max(Math.floor(Math.log2(Math.abs(v))), -14);
  const ulp = 2 ** (e - 10);
  const q = v / ulp;
  let r = Math.round(q);
  if (Math.abs(q - Math.trunc(q)) === 0.5) r = 2 * Math.round(q / 2);  // a tie: to even
  const out = r * ulp;
  return Math.abs(out) >= 65520 ? Math.sign(v) * Infinity : out;
}

const roundTo = (dtype: FloatDType, v: number): number =>
  dtype === 'bf16' ? roundBf16(v) : dtype === 'f16' ? roundF16(v) : Math.fround(v);

/** n distinct values of [0, below) in random order. */
function randomDistinct(n: number, below: number, next: () => number): Int32Array {
  const all = Array.from({ length: below }, (_, i) => i);
  for (let i = below - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [all[i], all[j]] = [all[j]!, all[i]!];
  }
  return Int32Array.from(all.slice(0, n));
}

const tol = (dtype: FloatDType): number => (dtype === 'f32' ? 1e-4 : 2e-2);

forEachDevice('row and layout ops', { seed: 5 }, ({ device, dtypes, it }) => {
  for (const dtype of dtypes) {
    it(`${dtype}: add (same shape and suffix broadcast), scale, scaleChannels against float64`, async (e) => {
      const next = rng(`arith-${device}-${dtype}`);
      const cases: Array<[number[], number[]]> = [
        [[7, 3], [7, 3]], [[5, 1], [1]], [[9, 1000], [1000]], [[3, 5, 7], [5, 7]], [[2, 3, 4], [4]], [[11], [11]],
        [[33, 1001], [33, 1001]], [[37, 999], [999]], [[4, 3], []],
      ];
      for (const [aShape, bShape] of cases) {
        const n = aShape.reduce((p, d) => p * d, 1), nb = bShape.reduce((p, d) => p * d, 1);
        const a = randomArray(n, next), b = randomArray(nb, next), alpha = next() * 4 - 2;
        using ta = e.tensor(a, aShape, { dtype });
        using tb = e.tensor(b, bShape, { dtype });
        using sum = ops.add(ta, tb);
        using scaled = ops.scale(ta, alpha);
        assert.deepEqual(sum.shape, aShape);
        assert.equal(sum.dtype, dtype);
        const errs = [
          relativeError(await sum.toArray(), referenceAdd(a, b)),
          relativeError(await scaled.toArray(), Float64Array.from(a, (v) => alpha * v)),
        ];
        if (bShape.length === 1) {
          using y = ops.scaleChannels(ta, tb);
          errs.push(relativeError(await y.toArray(), referenceScaleChannels(a, b)));
        }
        assert.ok(errs.every((x) => x <= tol(dtype)), `${aShape} + ${bShape}: ${errs}`);
      }
    });

    it(`${dtype}: scaleChannelsBackward and sumRows against float64, C = 1, 3, 1000, many rows`, async (e) => {
      const next = rng(`colsums-${device}-${dtype}`);
      for (const shape of [[4, 1], [1, 3], [5, 2, 3], [37, 1000], [3000, 3], [1100, 1]]) {
        const n = shape.reduce((p, d) => p * d, 1), c = shape[shape.length - 1]!;
        const x = randomArray(n, next), s = randomArray(c, next), dy = randomArray(n, next);
        using tx = e.tensor(x, shape, { dtype });
        using ts = e.tensor(s, [c], { dtype });
        using td = e.tensor(dy, shape, { dtype });
        const g = ops.scaleChannelsBackward(tx, ts, td);
        using dx = g.dx;
        using dScale = g.dScale;
        using rowSum = ops.sumRows(tx);
        assert.deepEqual(dScale.shape, [c]);
        assert.deepEqual(rowSum.shape, [c]);
        // column sums of terms that can cancel (C = 1: one sum of ±values): their error is
        // relative to Σ|term|; the references use the unrounded inputs, so a bf16 error includes their rounding
        const abs = (a: Float32Array) => a.map(Math.abs);
        const errs = [
          relativeError(await dx.toArray(), referenceScaleChannels(dy, s)),
          scaledError(await dScale.toArray(), referenceColumnSums(dy, c, x), referenceColumnSums(abs(dy), c, abs(x))),
          scaledError(await rowSum.toArray(), referenceColumnSums(x, c), referenceColumnSums(abs(x), c)),
        ];
        assert.ok(errs.every((v) => v <= tol(dtype)), `${shape}: ${errs}`);
      }
    });

    it(`${dtype}: gatherRows, scatterAddRows (M > N, repeats), scatterRows, writeRows against float64`, async (e) => {
      const next = rng(`rows-${device}-${dtype}`);
      // [N, rest, M]
      const cases: Array<[number, number[], number]> = [[1, [1], 1], [7, [3], 5], [5, [2, 3], 17], [40, [1000], 33], [9, [], 4]];
      for (const [n, rest, m] of cases) {
        const cols = rest.reduce((p, d) => p * d, 1);
        const x = randomArray(n * cols, next), src = randomArray(m * cols, next);
        const idx = randomInts(m, n, next);
        using tx = e.tensor(x, [n, ...rest], { dtype });
        using ts = e.tensor(src, [m, ...rest], { dtype });
        using ti = e.tensor<'i32'>(idx, [m]);
        using gathered = ops.gatherRows(tx, ti);
        using added = ops.scatterAddRows(ts, ti, n);
        assert.deepEqual(gathered.shape, [m, ...rest]);
        assert.deepEqual(added.shape, [n, ...rest]);
        assert.equal(added.dtype, dtype);
        const gatherRef = referenceGather(x.map((v) => roundTo(dtype, v)), cols, idx);
        assert.deepEqual(Array.from(await gathered.toArray()), Array.from(gatherRef), `gather ${n} ${rest} ${m}`);
        const errs = [relativeError(await added.toArray(), referenceScatterAdd(src, cols, idx, n))];
        // The overwriting ops need distinct indices: at most N of them.
        const k = Math.min(m, n);
        const distinct = randomDistinct(k, n, next);
        using tk = e.tensor<'i32'>(distinct, [k]);
        using tsk = e.tensor(src.subarray(0, k * cols), [k, ...rest], { dtype });
        using scattered = ops.scatterRows(tx, tk, tsk);
        const scatterRef = referenceScatter(x, cols, distinct, src.subarray(0, k * cols));
        errs.push(relativeError(await scattered.toArray(), scatterRef));
        using dst = ops.copy(tx);
        ops.writeRows(dst, tk, tsk);
        errs.push(relativeError(await dst.toArray(), scatterRef));
        errs.push(relativeError(await tx.toArray(), x));  // base and the copy's source untouched
        assert.ok(errs.every((v) => v <= tol(dtype)), `[${n}, ${rest}] M ${m}: ${errs}`);
      }
    });
  }

  it('cast rounds to nearest even between f32, bf16 and f16 (exactly), copy keeps the dtype', async (e) => {
    const next = rng(`cast-${device}`);
    const n = 301;
    const values = Float32Array.from({ length: n }, (_, i) =>
      i < 8 ? [0, -0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 70000, 1e-6, -3.14159, 65504][i]! : (next() * 2 - 1) * 2 ** Math.floor(next() * 30 - 15));
    for (const from of ['f32', 'bf16', 'f16'] as FloatDType[]) {
      using x = e.tensor(values, [n], { dtype: from });
      const stored = values.map((v) => roundTo(from, v));
      for (const to of ['f32', 'bf16', 'f16'] as FloatDType[]) {
        using y = ops.cast(x, to);
        assert.equal(y.dtype, to);
        assert.deepEqual(y.shape, [n]);
        const got = await y.toArray();
        const want = stored.map((v) => roundTo(to, v));
        for (let i = 0; i < n; i++) assert.ok(Object.is(got[i], want[i]), `${from} → ${to} [${i}] ${values[i]}: ${got[i]} vs ${want[i]}`);
      }
      using c = ops.copy(x);
      assert.equal(c.dtype, from);
      assert.deepEqual(Array.from(await c.toArray()), Array.from(stored));
    }
    using ints = e.tensor<'i32'>(new Int32Array([3, -7, 2 ** 31 - 1]), [3]);
    using intsCopy = ops.copy(ints);
    assert.equal(intsCopy.dtype, 'i32');
    assert.deepEqual(Array.from(await intsCopy.toArray()), [3, -7, 2 ** 31 - 1]);
    using nonFinite = e.tensor(new Float32Array([NaN, Infinity, -Infinity]), [3]);
    for (const to of ['bf16', 'f16'] as FloatDType[]) {
      using y = ops.cast(nonFinite, to);
      const got = await y.toArray();
      assert.ok(Number.isNaN(got[0]) && got[1] === Infinity && got[2] === -Infinity, `${to}: ${got}`);
    }
  });

  it('the row copies move bf16 and f16 rows bit for bit (on the CPU too)', async (e) => {
    const next = rng(`rows16-${device}`);
    for (const dtype of ['bf16', 'f16'] as FloatDType[]) {
      const x = randomArray(7 * 5, next), src = randomArray(3 * 5, next);
      using tx = e.tensor(x, [7, 5], { dtype });
      using ts = e.tensor(src, [3, 5], { dtype });
      using ti = e.tensor<'i32'>(new Int32Array([6, 0, 3]), [3]);
      const xr = x.map((v) => roundTo(dtype, v)), sr = src.map((v) => roundTo(dtype, v));
      using g = ops.gatherRows(tx, ti);
      assert.equal(g.dtype, dtype);
      assert.deepEqual(Array.from(await g.toArray()), Array.from(referenceGather(xr, 5, new Int32Array([6, 0, 3]))));
      using s = ops.scatterRows(tx, ti, ts);
      const want = Array.from(referenceScatter(xr, 5, new Int32Array([6, 0, 3]), sr));
      assert.deepEqual(Array.from(await s.toArray()), want);
      using v = ops.reshape(ops.copy(tx), [7, 5]);
      ops.writeRows(v, ti, ts);
      assert.deepEqual(Array.from(await v.toArray()), want);
    }
  });

  it('copy and cast to the same dtype give memory of their own', async (e) => {
    using x = e.tensor(new Float32Array([1, 2, 3, 4]), [2, 2]);
    using c = ops.copy(x);
    using c2 = ops.cast(x, 'f32');
    using row = e.tensor(new Float32Array([9, 9]), [1, 2]);
    using zero = e.tensor<'i32'>(new Int32Array([0]), [1]);
    ops.writeRows(c, zero, row);
    ops.writeRows(c2, zero, row);
    assert.deepEqual(Array.from(await x.toArray()), [1, 2, 3, 4]);
    assert.deepEqual(Array.from(await c.toArray()), [9, 9, 3, 4]);
  });

  it('reshape is a view: shares memory with its base both ways, infers -1, outlives the base', async (e) => {
    const next = rng(`reshape-${device}`);
    const base = e.tensor(randomArray(24, next), [4, 6]);
    const view = ops.reshape(base, [2, -1, 3]);
    assert.deepEqual(view.shape, [2, 4, 3]);
    assert.deepEqual(ops.reshape(base, [-1]).shape, [24]);
    using rows = e.tensor(new Float32Array([1, 2, 3, 4, 5, 6]), [1, 6]);
    using idx = e.tensor<'i32'>(new Int32Array([2]), [1]);
    ops.writeRows(base, idx, rows);  // through the base …
    const seen = await view.toArray();
    assert.deepEqual(Array.from(seen.subarray(12, 18)), [1, 2, 3, 4, 5, 6]);
    using flat = ops.reshape(view, [8, 3]);
    using one = e.tensor(new Float32Array([7, 8, 9]), [1, 3]);
    using zero = e.tensor<'i32'>(new Int32Array([0]), [1]);
    ops.writeRows(flat, zero, one);  // … and through a view of the view
    assert.deepEqual(Array.from((await base.toArray()).subarray(0, 3)), [7, 8, 9]);
    const before = e.memoryStats().allocatedBytes;
    using again = ops.reshape(base, [24]);
    assert.equal(e.memoryStats().allocatedBytes, before, 'a view allocates nothing');
    base.dispose();  // the view keeps the memory alive
    const kept = await view.toArray();
    assert.equal(kept.length, 24);
    assert.ok(kept.every(Number.isFinite));
    view.dispose();
    assert.equal((await again.toArray())[0], 7);
  });

  it('reshape shares the error of the op that made its base', async (e) => {
    using x = e.randn([4, 2]);
    using bad = e.tensor<'i32'>(new Int32Array([5]), [1]);
    using g = ops.gatherRows(x, bad);
    using v = ops.reshape(g, [2]);
    await assert.rejects(v.toArray(), R1VError);
    await e.synchronize().catch(() => undefined);
  });

  it('empty inputs give empty outputs (scatterAddRows, sumRows: zeros)', async (e) => {
    using x = e.randn([0, 5]);
    using none = e.tensor<'i32'>(new Int32Array(0), [0]);
    using g = ops.gatherRows(x, none);
    assert.deepEqual(g.shape, [0, 5]);
    using src = e.randn([0, 3]);
    using added = ops.scatterAddRows(src, none, 4);
    assert.deepEqual(Array.from(await added.toArray()), new Array(12).fill(0));
    using sum = ops.sumRows(x);
    assert.deepEqual(Array.from(await sum.toArray()), new Array(5).fill(0));
    using y = e.randn([3, 4]);
    using same = ops.scatterRows(y, none, e.randn([0, 4]));
    assert.deepEqual(Array.from(await same.toArray()), Array.from(await y.toArray()));
    ops.writeRows(y, none, e.randn([0, 4]));
    const sx = ops.scaleChannelsBackward(x, e.randn([5]), x);
    assert.deepEqual(Array.from(await sx.dScale.toArray()), new Array(5).fill(0));
    sx.dx.dispose();
    sx.dScale.dispose();
    assert.equal((await ops.add(x, e.randn([5])).toArray()).length, 0);
    assert.equal((await ops.cast(x, 'f32').toArray()).length, 0);
    assert.equal((await ops.gatherRows(e.randn([3, 0]), e.tensor<'i32'>(new Int32Array([1, 2]), [2])).toArray()).length, 0);
  });

  it('scaleChannelsBackward matches central finite differences; scatterAddRows is the adjoint of gatherRows', async (e) => {
    const next = rng(`fd-${device}`);
    const [rows, c] = [5, 7];
    const x = randomArray(rows * c, next), s = randomArray(c, next), w = randomArray(rows * c, next);
    const vx = randomArray(rows * c, next), vs = randomArray(c, next);
    using tx = e.tensor(x, [rows, c]);
    using ts = e.tensor(s, [c]);
    using tw = e.tensor(w, [rows, c]);
    const g = ops.scaleChannelsBackward(tx, ts, tw);
    using dx = g.dx;
    using dScale = g.dScale;
    const fd = centralDifferenceAlong(([xm, sm]) => dot(w, referenceScaleChannels(xm!, sm!)), [x, s], [vx, vs], 1e-3);
    const analytic = dot(vx, await dx.toArray()) + dot(vs, await dScale.toArray());
    assert.ok(Math.abs(fd - analytic) <= 1e-4 * (1 + Math.abs(fd)), `fd ${fd} vs ${analytic}`);

    const [n, m] = [6, 11];
    const table = randomArray(n * 3, next), dy = randomArray(m * 3, next), idx = randomInts(m, n, next);
    using tt = e.tensor(table, [n, 3]);
    using ti = e.tensor<'i32'>(idx, [m]);
    using tdy = e.tensor(dy, [m, 3]);
    using gathered = ops.gatherRows(tt, ti);
    using back = ops.scatterAddRows(tdy, ti, n);
    const lhs = dot(await gathered.toArray(), dy), rhs = dot(table, await back.toArray());
    assert.ok(Math.abs(lhs - rhs) <= 1e-4 * (1 + Math.abs(lhs)), `${lhs} vs ${rhs}`);
  });

  it('sumRows and scaleChannelsBackward are bitwise reproducible', async (e) => {
    const next = rng(`repro-${device}`);
    using x = e.tensor(randomArray(513 * 130, next), [513, 130]);
    using a = ops.sumRows(x);
    using b = ops.sumRows(x);
    assert.deepEqual(await a.toArray(), await b.toArray());
  });

  it('bad indices reject the readback naming them; writeRows marks dst; the engine goes on', async (e) => {
    using x = e.randn([6, 3]);
    for (const bad of [6, -1]) {
      using ti = e.tensor<'i32'>(new Int32Array([0, bad, 2]), [3]);
      const pattern = (op: string) => (device === 'cpu' ? new RegExp(`${op}: idx\\[1\\] = ${bad} is outside \\[0, 6\\)`) : /idx/);
      using g = ops.gatherRows(x, ti);
      await expectR1VRejection(g.toArray(), 'ARGUMENT', pattern('gatherRows'));
      using a = ops.scatterAddRows(e.randn([3, 3]), ti, 6);
      await expectR1VRejection(a.toArray(), 'ARGUMENT', pattern('scatterAddRows'));
      using s = ops.scatterRows(x, ti, e.randn([3, 3]));
      await expectR1VRejection(s.toArray(), 'ARGUMENT', pattern('scatterRows'));
    }
    using dup = e.tensor<'i32'>(new Int32Array([4, 1, 4]), [3]);
    using s = ops.scatterRows(x, dup, e.randn([3, 3]));
    await expectR1VRejection(s.toArray(), 'ARGUMENT', device === 'cpu' ? /scatterRows: idx\[2\] = 4 repeats idx\[0\]/ : /idx/);
    using dst = e.randn([6, 3]);
    ops.writeRows(dst, dup, e.randn([3, 3]));
    await expectR1VRejection(dst.toArray(), 'ARGUMENT', device === 'cpu' ? /writeRows: idx\[2\] = 4 repeats idx\[0\]/ : /idx/);
    await e.synchronize().catch(() => undefined);
    using ok = ops.gatherRows(x, e.tensor<'i32'>(new Int32Array([5, 0]), [2]));
    assert.ok((await ok.toArray()).every(Number.isFinite));
  });

  it('rejects bad arguments, naming them', (e) => {
    using x = e.randn([3, 4]);
    using idx = e.tensor<'i32'>(new Int32Array([0, 1]), [2]);
    expectR1VError(() => ops.reshape(x, [5, -1]), 'SHAPE', /reshape: cannot infer/);
    expectR1VError(() => ops.reshape(x, [-1, -1]), 'SHAPE', /more than one -1/);
    expectR1VError(() => ops.reshape(x, [2, 5]), 'SHAPE', /reshape: shape \[2, 5\] has 10 elements/);
    expectR1VError(() => ops.reshape(x, [-2, 6]), 'SHAPE', /reshape: shape\[0\]/);
    expectR1VError(() => ops.add(x, e.randn([3])), 'SHAPE', /add: b must have a's shape/);
    expectR1VError(() => ops.add(x, e.randn([2, 3, 4])), 'SHAPE', /add: b/);
    expectR1VError(() => ops.add(x, e.randn([4], { dtype: 'bf16' }) as never), 'DTYPE', /add: b/);
    expectR1VError(() => ops.scale(x, NaN), 'ARGUMENT', /scale: alpha/);
    expectR1VError(() => ops.scaleChannels(x, e.randn([3])), 'SHAPE', /scaleChannels: s must have shape \[4\]/);
    expectR1VError(() => ops.scaleChannelsBackward(x, e.randn([4]), e.randn([4, 3])), 'SHAPE', /scaleChannelsBackward: dY/);
    expectR1VError(() => ops.sumRows(e.tensor<'i32'>(new Int32Array([1]), [1]) as never), 'DTYPE', /sumRows: x/);
    expectR1VError(() => ops.gatherRows(x, e.tensor(new Float32Array([0]), [1]) as never), 'DTYPE', /gatherRows: idx must be i32/);
    expectR1VError(() => ops.gatherRows(x, e.tensor<'i32'>(new Int32Array([0, 1]), [1, 2])), 'SHAPE', /gatherRows: idx must be 1-D/);
    expectR1VError(() => ops.scatterAddRows(x, idx, 4), 'SHAPE', /scatterAddRows: src must have one row per index/);
    expectR1VError(() => ops.scatterAddRows(e.randn([2, 4]), idx, -1), 'ARGUMENT', /scatterAddRows: rows/);
    expectR1VError(() => ops.scatterRows(x, idx, e.randn([2, 5])), 'SHAPE', /scatterRows: src must have shape \[2, 4\]/);
    expectR1VError(() => ops.writeRows(x, idx, e.randn([2, 4], { dtype: 'f16' }) as never), 'DTYPE', /writeRows: src/);
    expectR1VError(() => ops.cast(x, 'i32' as never), 'DTYPE', /cast: dtype/);
    expectR1VError(() => ops.cast(idx as never, 'f32'), 'DTYPE', /cast: x/);
    expectR1VError(() => ops.gatherRows(e.tensor(new Float32Array([1]), []), idx), 'SHAPE', /gatherRows: x/);
    if (device === 'cpu') {
      expectR1VError(() => ops.add(e.randn([2], { dtype: 'bf16' }), e.randn([2], { dtype: 'bf16' })), 'DTYPE', /add: a .*CPU/);
    }
    const other = Engine.create({ device });
    try {
      expectR1VError(() => ops.gatherRows(x, other.tensor<'i32'>(new Int32Array([0]), [1])), 'DEVICE', /gatherRows: idx/);
      expectR1VError(() => ops.add(x, other.randn([4])), 'DEVICE', /add: b/);
    } finally {
      other.dispose();
    }
    const gone = e.randn([2]);
    gone.dispose();
    expectR1VError(() => ops.reshape(gone, [2]), 'DISPOSED');
    expectR1VError(() => ops.copy(42 as never), 'ARGUMENT', /copy: x must be a Tensor/);
  });
});

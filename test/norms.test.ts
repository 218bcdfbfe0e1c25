import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { Engine, ops, type Tensor } from '../lib/index.js';
import { expectR1VError, forEachDevice, randomArray, relativeError, rng, scaledError } from './helpers.js';
import { centralDifferenceAlong } from './reference/diff.js';
import { normBackwardReference, normReference } from './reference/layers.js';
import { dot } from './reference/math.js';

// ---------------------------------------------------------------- cases

// Odd D (1, 3, 17, 897 = 896 + 1), N = 1 and N not a multiple of the 64-row partial blocks, 3-D.
const SHAPES: number[][] = [[1, 1], [1, 3], [5, 17], [67, 3], [130, 17], [3, 897], [2, 3, 17], [1, 67, 1], [70, 65]];
const size = (s: number[]) => s.reduce((a, b) => a * b, 1);
const statsShape = (s: number[]) => s.slice(0, -1);

interface Inputs { x: Float32Array; weight: Float32Array; bias: Float32Array; dY: Float32Array }
function randomInputs(shape: number[], next: () => number): Inputs {
  const d = shape[shape.length - 1]!;
  return {
    // an offset so that LayerNorm's centring matters
    x: randomArray(size(shape), next).map((u) => 2 * u + 0.5),
    weight: randomArray(d, next).map((u) => 1 + 0.5 * u),
    bias: randomArray(d, next).map((u) => 0.3 * u),
    dY: randomArray(size(shape), next),
  };
}

const f64 = async (t: Tensor) => Float64Array.from(await t.toArray());

// rstd[row]·dY·weight, the size of the terms dx is made of.
function dxScale(dY: ArrayLike<number>, w: ArrayLike<number>, rstd: ArrayLike<number>, d: number): Float64Array {
  return Float64Array.from(dY, (v, i) => v * w[i % d]! * rstd[Math.floor(i / d)]!);
}

// dx is a difference of terms of size rstd·dY·weight that cancel almost exactly when D is tiny
// (D = 1: exactly, for LayerNorm), so its error is relative to that size (scaledError), not to ‖dx‖.
// dWeight and dBias are sums over rows whose terms can cancel too (D = 1: x̂ = ±1, so
// dWeight = Σ ±dY): their error is relative to Σ|term| per column.
function columnAbsSum(terms: (i: number) => number, n: number, d: number): Float64Array {
  const out = new Float64Array(d);
  for (let i = 0; i < n; i++) out[i % d] = out[i % d]! + Math.abs(terms(i));
  return out;
}

forEachDevice('norms', { seed: 11 }, ({ device, dtypes, it }) => {
  it('hand-computed rows: RMSNorm of [3, 4], LayerNorm of [1, 2, 3, 6]', async (e) => {
    using x = e.tensor(new Float32Array([3, 4]), [1, 2]);
    using w = e.tensor(new Float32Array([1, 2]), [2]);
    const rms = ops.rmsNorm(x, w, { eps: 0.5 }); // mean(x²) = 12.5, + eps = 13
    const r = 1 / Math.sqrt(13);
    assert.ok(relativeError(await rms.y.toArray(), [3 * r, 8 * r]) < 1e-6);
    assert.ok(relativeError(await rms.rstd.toArray(), [r]) < 1e-6);
    using x4 = e.tensor(new Float32Array([1, 2, 3, 6]), [1, 1, 4]);
    using ones = e.ones([4]);
    using shift = e.full([4], 10);
    const ln = ops.layerNorm(x4, ones, shift, { eps: 1e-6 }); // mean 3, biased variance 3.5
    const s = 1 / Math.sqrt(3.5 + 1e-6);
    assert.deepEqual(ln.mean.shape, [1, 1]);
    assert.ok(relativeError(await ln.mean.toArray(), [3]) < 1e-6);
    assert.ok(relativeError(await ln.rstd.toArray(), [s]) < 1e-6);
    assert.ok(relativeError(await ln.y.toArray(), [-2, -1, 0, 3].map((v) => 10 + v * s)) < 1e-6);
    [rms.y, rms.rstd, ln.y, ln.mean, ln.rstd].forEach((t) => t.dispose());
  });

  for (const dtype of dtypes) {
    const tol = dtype === 'f32' ? 1e-4 : 2e-2;
    for (const kind of ['rmsNorm', 'layerNorm'] as const) {
      it(`${kind} ${dtype}: forward, statistics and backward against float64 at odd sizes`, async (e) => {
        const next = rng(`norms-${kind}-${device}-${dtype}`);
        for (const shape of SHAPES) {
          const d = shape[shape.length - 1]!;
          for (const eps of kind === 'rmsNorm' ? [undefined, 1e-5, 0.5] : [undefined, 1e-6, 0.5]) {
            const epsValue = eps ?? (kind === 'rmsNorm' ? 1e-6 : 1e-5);
            const a = randomInputs(shape, next);
            using x = e.tensor(a.x, shape, { dtype });
            using weight = e.tensor(a.weight, [d], { dtype });
            using bias = e.tensor(a.bias, [d], { dtype });
            using dY = e.tensor(a.dY, shape, { dtype });
            // references on the values the engine holds (rounded to its dtype)
            const [xv, wv, bv, dyv] = await Promise.all([f64(x), f64(weight), f64(bias), f64(dY)]);
            const centred = kind === 'layerNorm';
            const ref = normReference(xv, wv, centred ? bv : null, d, epsValue);
            const gref = normBackwardReference(xv, wv, centred, d, epsValue, dyv);
            const what = `${JSON.stringify(shape)} eps=${epsValue}`;
            const rowOf = (i: number) => Math.floor(i / d);
            const mean = (i: number) => (centred ? ref.mean[rowOf(i)]! : 0);
            const scales: Record<string, Float64Array> = {
              dx: dxScale(dyv, wv, ref.rstd, d),
              dWeight: columnAbsSum((i) => dyv[i]! * (xv[i]! - mean(i)) * ref.rstd[rowOf(i)]!, xv.length, d),
              dBias: columnAbsSum((i) => dyv[i]!, xv.length, d),
            };
            const check = async (name: string, t: Tensor, expected: Float64Array, expectedShape: number[], tolerance = tol) => {
              assert.deepEqual(t.shape, expectedShape, `${what} ${name} shape`);
              const got = await t.toArray();
              const scale = scales[name];
              const err = scale ? scaledError(got, expected, scale) : relativeError(got, expected);
              assert.ok(err <= tolerance, `${what} ${name}: rel err ${err}`);
            };
            const options = eps === undefined ? undefined : { eps };
            if (kind === 'rmsNorm') {
              const f = ops.rmsNorm(x, weight, options);
              assert.equal(f.y.dtype, dtype);
              assert.equal(f.rstd.dtype, 'f32');
              await check('y', f.y, ref.y, shape);
              await check('rstd', f.rstd, ref.rstd, statsShape(shape), 1e-5);
              const g = ops.rmsNormBackward(x, weight, f.rstd, dY);
              await check('dx', g.dx, gref.dx, shape);
              await check('dWeight', g.dWeight, gref.dWeight, [d]);
              [f.y, f.rstd, g.dx, g.dWeight].forEach((t) => t.dispose());
            } else {
              const f = ops.layerNorm(x, weight, bias, options);
              assert.equal(f.y.dtype, dtype);
              assert.equal(f.mean.dtype, 'f32');
              await check('y', f.y, ref.y, shape);
              await check('mean', f.mean, ref.mean, statsShape(shape), 1e-5);
              await check('rstd', f.rstd, ref.rstd, statsShape(shape), 1e-5);
              const g = ops.layerNormBackward(x, weight, f.mean, f.rstd, dY);
              await check('dx', g.dx, gref.dx, shape);
              await check('dWeight', g.dWeight, gref.dWeight, [d]);
              await check('dBias', g.dBias, gref.dBias, [d]);
              [f.y, f.mean, f.rstd, g.dx, g.dWeight, g.dBias].forEach((t) => t.dispose());
            }
          }
        }
      });
    }
  }

  it('gradients agree with central finite differences of the float64 forward', async (e) => {
    const next = rng(`norms-fd-${device}`);
    for (const shape of [[3, 5], [2, 2, 7], [1, 1]]) {
      const d = shape[shape.length - 1]!;
      const a = randomInputs(shape, next);
      using x = e.tensor(a.x, shape);
      using weight = e.tensor(a.weight, [d]);
      using bias = e.tensor(a.bias, [d]);
      const lossWeights = Float64Array.from(randomArray(size(shape), next));
      using dY = e.tensor(Float32Array.from(lossWeights), shape); // L = Σ lossWeights·y
      const rms = ops.rmsNorm(x, weight);
      const ln = ops.layerNorm(x, weight, bias);
      const rg = ops.rmsNormBackward(x, weight, rms.rstd, dY);
      const lg = ops.layerNormBackward(x, weight, ln.mean, ln.rstd, dY);
      const v = { x: await f64(x), weight: await f64(weight), bias: await f64(bias) };
      const step = 1e-5;
      const cases: Array<[string, boolean, 'x' | 'weight' | 'bias', Tensor, number]> = [
        ['rmsNorm dx', false, 'x', rg.dx, 1e-6], ['rmsNorm dWeight', false, 'weight', rg.dWeight, 1e-6],
        ['layerNorm dx', true, 'x', lg.dx, 1e-5], ['layerNorm dWeight', true, 'weight', lg.dWeight, 1e-5],
        ['layerNorm dBias', true, 'bias', lg.dBias, 1e-5],
      ];
      for (const [name, centred, input, grad, eps] of cases) {
        const loss = (u: typeof v) => dot(normReference(u.x, u.weight, centred ? u.bias : null, d, eps).y, lossWeights);
        const direction = Float64Array.from(randomArray(v[input].length, next));
        const numeric = centralDifferenceAlong(([moved]) => loss({ ...v, [input]: moved! }), [v[input]], [direction], step);
        const engine = dot(await grad.toArray(), direction);
        assert.ok(Math.abs(engine - numeric) <= 1e-4 * Math.max(1, Math.abs(numeric)),
          `${JSON.stringify(shape)} ${name}: engine ${engine}, finite differences ${numeric}`);
      }
      [rms.y, rms.rstd, ln.y, ln.mean, ln.rstd, rg.dx, rg.dWeight, lg.dx, lg.dWeight, lg.dBias].forEach((t) => t.dispose());
    }
  });

  it('parameter gradients are bitwise reproducible (fixed-order column sums)', async (e) => {
    const next = rng(`norms-repro-${device}`);
    const shape = [300, 33];
    const a = randomInputs(shape, next);
    using x = e.tensor(a.x, shape);
    using weight = e.tensor(a.weight, [33]);
    using bias = e.tensor(a.bias, [33]);
    using dY = e.tensor(a.dY, shape);
    const ln = ops.layerNorm(x, weight, bias);
    const runs = [0, 1].map(() => ops.layerNormBackward(x, weight, ln.mean, ln.rstd, dY));
    assert.deepEqual(await runs[1]!.dWeight.toArray(), await runs[0]!.dWeight.toArray());
    assert.deepEqual(await runs[1]!.dBias.toArray(), await runs[0]!.dBias.toArray());
    const rms = ops.rmsNorm(x, weight);
    const rruns = [0, 1].map(() => ops.rmsNormBackward(x, weight, rms.rstd, dY));
    assert.deepEqual(await rruns[1]!.dWeight.toArray(), await rruns[0]!.dWeight.toArray());
    for (const g of [...runs, ...rruns]) Object.values(g).forEach((t: Tensor) => t.dispose());
    [ln.y, ln.mean, ln.rstd, rms.y, rms.rstd].forEach((t) => t.dispose());
  });

  it('N = 0 rows: empty outputs and zero parameter gradients', async (e) => {
    using x = e.zeros([0, 5]);
    using x3 = e.zeros([2, 0, 5]);
    using weight = e.ones([5]);
    using bias = e.zeros([5]);
    for (const xs of [x, x3]) {
      const rms = ops.rmsNorm(xs, weight);
      assert.deepEqual(rms.y.shape, xs.shape);
      assert.deepEqual(rms.rstd.shape, xs.shape.slice(0, -1));
      const rg = ops.rmsNormBackward(xs, weight, rms.rstd, xs);
      assert.deepEqual(Array.from(await rg.dWeight.toArray()), [0, 0, 0, 0, 0]);
      const ln = ops.layerNorm(xs, weight, bias);
      const lg = ops.layerNormBackward(xs, weight, ln.mean, ln.rstd, xs);
      assert.deepEqual(Array.from(await lg.dWeight.toArray()), [0, 0, 0, 0, 0]);
      assert.deepEqual(Array.from(await lg.dBias.toArray()), [0, 0, 0, 0, 0]);
      assert.deepEqual(lg.dx.shape, xs.shape);
      [rms.y, rms.rstd, rg.dx, rg.dWeight, ln.y, ln.mean, ln.rstd, lg.dx, lg.dWeight, lg.dBias].forEach((t) => t.dispose());
    }
  });

  it('rejects bad shapes, dtypes, engines and options, naming the argument', (e) => {
    using x = e.randn([4, 6]);
    using w = e.randn([6]);
    using b = e.randn([6]);
    using st = e.randn([4]);
    using dY = e.randn([4, 6]);
    expectR1VError(() => ops.rmsNorm(e.randn([6]), w), 'SHAPE', /rmsNorm: x must be 2-D \[N, D\] or 3-D \[B, S, D\], got shape \[6\]/);
    expectR1VError(() => ops.layerNorm(e.randn([1, 2, 2, 6]), w, b), 'SHAPE', /layerNorm: x must be 2-D/);
    expectR1VError(() => ops.rmsNorm(e.zeros([4, 0]), e.zeros([0])), 'SHAPE', /rmsNorm: x must have D ≥ 1/);
    expectR1VError(() => ops.rmsNorm(x, e.randn([5])), 'SHAPE', /rmsNorm: weight must have shape \[6\], got \[5\]/);
    expectR1VError(() => ops.layerNorm(x, w, e.randn([1, 6])), 'SHAPE', /layerNorm: bias must have shape \[6\]/);
    expectR1VError(() => ops.rmsNormBackward(x, w, e.randn([6]), dY), 'SHAPE', /rmsNormBackward: rstd must have shape \[4\]/);
    expectR1VError(() => ops.layerNormBackward(x, w, e.randn([4, 1]), st, dY), 'SHAPE', /layerNormBackward: mean must have shape \[4\]/);
    expectR1VError(() => ops.layerNormBackward(x, w, st, st, e.randn([4, 5])), 'SHAPE', /layerNormBackward: dY must have shape \[4, 6\]/);
    using x3 = e.randn([2, 3, 6]);
    expectR1VError(() => ops.rmsNormBackward(x3, w, e.randn([6]), e.randn([2, 3, 6])), 'SHAPE', /rstd must have shape \[2, 3\]/);

    expectR1VError(() => ops.rmsNorm(e.zeros([4, 6], { dtype: 'i32' }) as never, w), 'DTYPE', /rmsNorm: x must be a float tensor/);
    expectR1VError(() => ops.layerNorm(x, e.randn([6], { dtype: 'f16' }), b), 'DTYPE', /layerNorm: weight has dtype f16 but x is f32/);
    expectR1VError(() => ops.layerNorm(x, w, e.randn([6], { dtype: 'bf16' })), 'DTYPE', /layerNorm: bias/);
    expectR1VError(() => ops.rmsNormBackward(x, w, e.zeros([4], { dtype: 'i32' }) as never, dY), 'DTYPE', /rmsNormBackward: rstd must be f32/);
    expectR1VError(() => ops.layerNormBackward(x, w, st, st, e.randn([4, 6], { dtype: 'f16' })), 'DTYPE', /layerNormBackward: dY/);
    if (device === 'cpu') {
      expectR1VError(() => ops.rmsNorm(e.randn([4, 6], { dtype: 'bf16' }), e.randn([6], { dtype: 'bf16' })), 'DTYPE', /the CPU computes in f32 only/);
    }

    using other = Engine.create({ device: 'cpu' });
    expectR1VError(() => ops.rmsNorm(x, other.randn([6])), 'DEVICE', /rmsNorm: weight/);
    expectR1VError(() => ops.layerNorm(x, w, other.randn([6])), 'DEVICE', /layerNorm: bias/);
    expectR1VError(() => ops.layerNormBackward(x, w, other.randn([4]), st, dY), 'DEVICE', /layerNormBackward: mean/);
    expectR1VError(() => ops.rmsNormBackward(x, w, st, other.randn([4, 6])), 'DEVICE', /rmsNormBackward: dY/);

    for (const eps of [0, -1e-6, 1e-60, 1e300, Number.NaN, Infinity]) {
      expectR1VError(() => ops.rmsNorm(x, w, { eps }), 'ARGUMENT', /rmsNorm: (option )?eps must be/);
      expectR1VError(() => ops.layerNorm(x, w, b, { eps }), 'ARGUMENT', /layerNorm: (option )?eps/);
    }
    expectR1VError(() => ops.rmsNorm(x, w, { eps: '1e-6' as never }), 'ARGUMENT', /eps/);
    expectR1VError(() => ops.layerNorm(x, w, b, { epsilon: 1 } as never), 'ARGUMENT', /unknown option 'epsilon'/);
    expectR1VError(() => ops.rmsNorm(x, w, [] as never), 'ARGUMENT', /rmsNorm: options must be an object/);
    expectR1VError(() => ops.rmsNorm(x, undefined as never), 'ARGUMENT', /rmsNorm: weight must be a Tensor/);
    expectR1VError(() => ops.layerNormBackward(x, w, st, null as never, dY), 'ARGUMENT', /layerNormBackward: rstd must be a Tensor/);
    const gone = e.randn([6]);
    gone.dispose();
    expectR1VError(() => ops.layerNorm(x, w, gone), 'DISPOSED');
  });

  if (device === 'cpu') {
    it('every CPU ISA path (AVX-512, AVX2, portable) agrees with float64; 1 and 2 threads give identical bits', function () {
      this.timeout(120_000);
      const shape = [150, 37]; // three partial blocks, the last one short
      const a = randomInputs(shape, rng('norms-isa'));
      const arg = JSON.stringify({ shape, x: Array.from(a.x), weight: Array.from(a.weight), bias: Array.from(a.bias), dY: Array.from(a.dY) });
      const rmsRef = { ...normReference(a.x, a.weight, null, 37, 1e-6), ...normBackwardReference(a.x, a.weight, false, 37, 1e-6, a.dY) };
      const lnRef = { ...normReference(a.x, a.weight, a.bias, 37, 1e-5), ...normBackwardReference(a.x, a.weight, true, 37, 1e-5, a.dY) };
      const script = fileURLToPath(new URL('./fixtures/norms-check.ts', import.meta.url));
      for (const isa of ['avx512', 'avx2', 'generic']) {
        type Outputs = Record<string, number[]>;
        const byThreads: Array<{ rms: Outputs; layer: Outputs }> = [];
        for (const threads of ['1', '2']) {
          const run = spawnSync(process.execPath, ['--import', 'tsx', script], {
            input: arg, env: { ...process.env, R1V_CPU_ISA: isa, R1V_NUM_THREADS: threads }, encoding: 'utf8', maxBuffer: 1 << 26,
          });
          assert.equal(run.status, 0, `isa=${isa} threads=${threads}: ${run.stderr}`);
          const report = JSON.parse(run.stdout.trim().split('\n').pop()!) as { isa: string; rms: Outputs; layer: Outputs };
          for (const [name, got, ref] of [['rms', report.rms, rmsRef], ['layer', report.layer, lnRef]] as const) {
            for (const [output, values] of Object.entries(got)) {
              const expected = (ref as Record<string, Float64Array>)[output]!;
              const err = output === 'dx'
                ? scaledError(values, expected, dxScale(a.dY, a.weight, ref.rstd, 37))
                : relativeError(values, expected);
              assert.ok(err <= 1e-4, `isa=${isa} (ran ${report.isa}) threads=${threads} ${name} ${output}: rel err ${err}`);
            }
          }
          byThreads.push(report);
        }
        assert.deepEqual(byThreads[1], byThreads[0], `isa=${isa}: 2 threads differ from 1`);
      }
    });
  }
});

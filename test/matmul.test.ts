import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { buildInfo, Engine, type FloatDType, ops, type Tensor } from '../lib/index.js';
import { cudaAvailable, expectR1VError, matmulCaseError, randomArray, relativeError, rng } from './helpers.js';
import { type Activation, linearReference, matmulReference } from './reference/layers.js';
import { silu } from './reference/math.js';

const SIZES: Array<[number, number, number]> = [
  [1, 1, 1], [1, 7, 129], [7, 1, 13], [129, 7, 1], [2, 3, 4], [17, 31, 65],
  [64, 64, 64], [65, 63, 129], [129, 257, 33], [200, 150, 300], [1, 513, 70],
];

const backends = (['builtin', 'blas'] as const).filter((b) => b === 'builtin' || buildInfo().blas !== null);

describe('matmul (CPU)', () => {
  let e: Engine;
  before(() => {
    e = Engine.create({ device: 'cpu' });
  });
  after(() => e.dispose());

  for (const backend of backends) {
    it(`${backend}: 2-D, all transposes, odd sizes, against float64`, async () => {
      e.setCpuGemm(backend);
      const next = rng(`matmul-2d-${backend}`);
      for (const [m, n, k] of SIZES) {
        for (const transA of [false, true]) {
          for (const transB of [false, true]) {
            const err = await matmulCaseError(e, m, n, k, transA, transB, next);
            assert.ok(err < 1e-5, `${m}x${n}x${k} transA=${transA} transB=${transB}: rel err ${err}`);
          }
        }
      }
    });

    it(`${backend}: batched and broadcast operands`, async () => {
      e.setCpuGemm(backend);
      const next = rng(`matmul-3d-${backend}`);
      const cases: Array<{ a: number[]; b: number[]; transA?: boolean; transB?: boolean }> = [
        { a: [3, 5, 7], b: [3, 7, 4] },
        { a: [4, 9, 6], b: [6, 11] }, // 2-D b shared by every batch (x·W)
        { a: [5, 8], b: [2, 8, 3] }, // 2-D a shared
        { a: [1, 6, 5], b: [3, 5, 2] }, // batch 1 broadcasts
        { a: [2, 7, 3], b: [2, 4, 7], transA: true, transB: true },
      ];
      for (const { a: aShape, b: bShape, transA = false, transB = false } of cases) {
        const a = randomArray(aShape.reduce((x, y) => x * y), next);
        const b = randomArray(bShape.reduce((x, y) => x * y), next);
        using ta = e.tensor(a, aShape);
        using tb = e.tensor(b, bShape);
        using c = ops.matmul(ta, tb, { transA, transB });
        const batchA = aShape.length === 3 ? aShape[0]! : 1;
        const batchB = bShape.length === 3 ? bShape[0]! : 1;
        const batch = Math.max(batchA, batchB);
        const [aRows, aCols] = aShape.slice(-2) as [number, number];
        const [bRows, bCols] = bShape.slice(-2) as [number, number];
        const got = await c.toArray();
        const m = transA ? aCols : aRows;
        const n = transB ? bRows : bCols;
        assert.deepEqual(c.shape, [batch, m, n]);
        for (let i = 0; i < batch; i++) {
          const ai = a.subarray((batchA === 1 ? 0 : i) * aRows * aCols, ((batchA === 1 ? 0 : i) + 1) * aRows * aCols);
          const bi = b.subarray((batchB === 1 ? 0 : i) * bRows * bCols, ((batchB === 1 ? 0 : i) + 1) * bRows * bCols);
          const ref = matmulReference(ai, aRows, aCols, transA, bi, bRows, bCols, transB);
          const err = relativeError(got.subarray(i * m * n, (i + 1) * m * n), ref.out);
          assert.ok(err < 1e-5, `batch ${i} of ${JSON.stringify({ aShape, bShape })}: ${err}`);
        }
      }
    });
  }

  it('an empty inner dimension gives zeros; empty outer dimensions give empty results', async () => {
    for (const backend of backends) {
      e.setCpuGemm(backend);
      using c = ops.matmul(e.zeros([3, 0]), e.zeros([0, 4]));
      assert.deepEqual(Array.from(await c.toArray()), new Array(12).fill(0));
      using d = ops.matmul(e.randn([0, 5]), e.randn([5, 3]));
      assert.deepEqual(d.shape, [0, 3]);
    }
    e.setCpuGemm('auto');
  });

  it('rejects mismatched shapes, dtypes, engines and bad options with named arguments', () => {
    using a = e.randn([2, 3]);
    using b = e.randn([4, 5]);
    expectR1VError(() => ops.matmul(a, b), 'SHAPE', /inner dimensions differ/);
    expectR1VError(() => ops.matmul(e.randn([2, 2, 3]), e.randn([3, 3, 2])), 'SHAPE', /batch sizes differ/);
    expectR1VError(() => ops.matmul(e.randn([3]), e.randn([3, 3])), 'SHAPE', /a must be 2-D or 3-D/);
    expectR1VError(() => ops.matmul(e.randn([3, 3]), e.randn([1, 1, 3, 3])), 'SHAPE', /b must be 2-D or 3-D/);
    expectR1VError(() => ops.matmul(e.randn([2, 2], { dtype: 'bf16' }), e.randn([2, 2], { dtype: 'bf16' })), 'DTYPE', /CPU supports f32/);
    expectR1VError(() => ops.matmul(e.randn([2, 2]), e.randn([2, 2], { dtype: 'f16' })), 'DTYPE', /a is f32 but b is f16/);
    expectR1VError(() => ops.matmul(e.zeros([2, 2], { dtype: 'i32' }) as never, e.zeros([2, 2], { dtype: 'i32' }) as never), 'DTYPE', /i32/);
    using other = Engine.create({ device: 'cpu' });
    expectR1VError(() => ops.matmul(a, other.randn([3, 2])), 'DEVICE', /different engines/);
    expectR1VError(() => ops.matmul(a, {} as never), 'ARGUMENT', /matmul: b must be a Tensor/);
    expectR1VError(() => ops.matmul(a, e.randn([3, 2]), { transA: 1 } as never), 'ARGUMENT', /transA/);
    const gone = e.randn([3, 2]);
    gone.dispose();
    expectR1VError(() => ops.matmul(a, gone), 'DISPOSED');
  });

  it('every CPU ISA path (AVX-512, AVX2, portable) agrees with float64', function () {
    this.timeout(300_000);
    const script = fileURLToPath(new URL('./fixtures/matmul-check.ts', import.meta.url));
    for (const isa of ['avx512', 'avx2', 'generic']) {
      for (const threads of ['1', '2']) {
        const result = spawnSync(process.execPath, ['--import', 'tsx', script], {
          env: { ...process.env, R1V_CPU_ISA: isa, R1V_NUM_THREADS: threads },
          encoding: 'utf8',
        });
        assert.equal(result.status, 0, `isa=${isa} threads=${threads}: ${result.stderr}`);
        const report = JSON.parse(result.stdout.trim().split('\n').pop()!) as { isa: string; maxError: number };
        assert.ok(report.maxError < 1e-5, `isa=${isa} (ran ${report.isa}) threads=${threads}: ${report.maxError}`);
      }
    }
  });
});

// Where each epilogue case runs: CPU with each backend, CUDA (when present) per dtype.
interface Target {
  title: string;
  device: 'cpu' | 'cuda:0';
  dtype: 'f32' | 'bf16' | 'f16';
  cpuGemm?: 'builtin' | 'blas';
  tol: number;
}
const targets: Target[] = [
  ...backends.map((cpuGemm): Target => ({ title: `cpu ${cpuGemm}`, device: 'cpu', dtype: 'f32', cpuGemm, tol: 1e-4 })),
  ...(cudaAvailable()
    ? (['f32', 'bf16', 'f16'] as const).map((dtype): Target => ({
        title: `@cuda ${dtype}`, device: 'cuda:0', dtype, tol: dtype === 'f32' ? 1e-4 : 2e-2,
      }))
    : []),
];

const ACTIVATIONS: Activation[] = ['none', 'gelu', 'silu'];

/** Uploads data as dtype and returns the tensor and the values it really holds (rounded for 16-bit types). */
async function upload(e: Engine, data: Float32Array, shape: number[], dtype: FloatDType): Promise<[Tensor<FloatDType>, Float32Array]> {
  const t = e.tensor(data, shape, { dtype });
  return [t, (await t.toArray()) as Float32Array];
}

describe('matmul epilogue: bias and activation', () => {
  for (const target of targets) {
    describe(target.title, () => {
      let e: Engine;
      before(() => {
        e = Engine.create({ device: target.device, seed: 7, poisonNewTensors: true });
        if (target.cpuGemm) e.setCpuGemm(target.cpuGemm);
      });
      after(() => e.dispose());

      it(`${target.title}: bias × each activation × transposes, odd sizes (k over several blocks), against float64`, async () => {
        const next = rng(`epilogue-2d-${target.title}`);
        const sizes: Array<[number, number, number]> = [[1, 1, 1], [7, 13, 5], [33, 65, 129], [65, 40, 700], [130, 71, 257]];
        for (const [m, n, k] of sizes) {
          for (const transA of [false, true]) {
            for (const transB of [false, true]) {
              for (const act of ACTIVATIONS) {
                for (const withBias of [true, false]) {
                  const [aRows, aCols] = transA ? [k, m] : [m, k];
                  const [bRows, bCols] = transB ? [n, k] : [k, n];
                  const [ta, a] = await upload(e, randomArray(m * k, next), [aRows, aCols], target.dtype);
                  const [tb, b] = await upload(e, randomArray(k * n, next), [bRows, bCols], target.dtype);
                  const [tbias, bias] = await upload(e, randomArray(n, next), [n], target.dtype);
                  using c = ops.matmul(ta, tb, { transA, transB, activation: act, ...(withBias ? { bias: tbias } : {}) });
                  assert.deepEqual(c.shape, [m, n]);
                  const ref = linearReference(a, aRows, aCols, transA, b, bRows, bCols, transB, withBias ? bias : undefined, act);
                  const err = relativeError(await c.toArray(), ref);
                  assert.ok(err < target.tol, `${m}x${n}x${k} transA=${transA} transB=${transB} ${act} bias=${withBias}: ${err}`);
                  ta.dispose();
                  tb.dispose();
                  tbias.dispose();
                }
              }
            }
          }
        }
      });

      it(`${target.title}: Linear layout (x·Wᵀ + b) batched, and broadcast operands, with GELU and SiLU`, async () => {
        const next = rng(`epilogue-3d-${target.title}`);
        const cases: Array<{ a: number[]; b: number[]; transA?: boolean; transB?: boolean; act: Activation }> = [
          { a: [3, 17, 33], b: [19, 33], transB: true, act: 'gelu' }, // x [B,T,in] · W[out,in]ᵀ
          { a: [2, 9, 6], b: [2, 6, 11], act: 'silu' },
          { a: [5, 8], b: [3, 8, 7], act: 'gelu' }, // 2-D a shared
          { a: [1, 6, 5], b: [3, 5, 4], act: 'silu' }, // batch 1 broadcasts
          { a: [2, 7, 3], b: [2, 4, 7], transA: true, transB: true, act: 'gelu' },
        ];
        for (const { a: aShape, b: bShape, transA = false, transB = false, act } of cases) {
          const [aRows, aCols] = aShape.slice(-2) as [number, number];
          const [bRows, bCols] = bShape.slice(-2) as [number, number];
          const m = transA ? aCols : aRows;
          const n = transB ? bRows : bCols;
          const [ta, a] = await upload(e, randomArray(aShape.reduce((x, y) => x * y), next), aShape, target.dtype);
          const [tb, b] = await upload(e, randomArray(bShape.reduce((x, y) => x * y), next), bShape, target.dtype);
          const [tbias, bias] = await upload(e, randomArray(n, next), [n], target.dtype);
          using c = ops.matmul(ta, tb, { transA, transB, bias: tbias, activation: act });
          const batchA = aShape.length === 3 ? aShape[0]! : 1;
          const batchB = bShape.length === 3 ? bShape[0]! : 1;
          const batch = Math.max(batchA, batchB);
          assert.deepEqual(c.shape, [batch, m, n]);
          const got = await c.toArray();
          for (let i = 0; i < batch; i++) {
            const ia = batchA === 1 ? 0 : i;
            const ib = batchB === 1 ? 0 : i;
            const ai = a.subarray(ia * aRows * aCols, (ia + 1) * aRows * aCols);
            const bi = b.subarray(ib * bRows * bCols, (ib + 1) * bRows * bCols);
            const ref = linearReference(ai, aRows, aCols, transA, bi, bRows, bCols, transB, bias, act);
            const err = relativeError(got.subarray(i * m * n, (i + 1) * m * n), ref);
            assert.ok(err < target.tol, `batch ${i} of ${JSON.stringify({ aShape, bShape, act })}: ${err}`);
          }
          ta.dispose();
          tb.dispose();
          tbias.dispose();
        }
      });

      it(`${target.title}: GELU and SiLU hold their accuracy on large and negative inputs`, async () => {
        // z spans [-12, 12]: GELU's negative tail is where 1 + erf(z/√2) would cancel.
        const n = 97;
        const z = new Float32Array(n).map((_, i) => -12 + (24 * i) / (n - 1));
        const [tz, zr] = await upload(e, z, [n, 1], target.dtype);
        const [tone] = await upload(e, new Float32Array([1]), [1, 1], target.dtype);
        for (const act of ['gelu', 'silu'] as const) {
          using y = ops.matmul(tz, tone, { activation: act });
          const got = await y.toArray();
          const ref = Array.from(zr, (v) => (act === 'gelu' ? linearReference([v], 1, 1, false, [1], 1, 1, false, undefined, act)[0]! : silu(v)));
          for (let i = 0; i < n; i++) {
            const rel = Math.abs(got[i]! - ref[i]!) / Math.max(Math.abs(ref[i]!), 1e-30);
            // f32: relative accuracy down to values ~1e-30; 16-bit outputs round to ~3 digits.
            const tol = target.dtype === 'f32' ? 2e-5 : 1e-2;
            if (Math.abs(ref[i]!) > 1e-30 || target.dtype === 'f32') {
              assert.ok(rel < tol || Math.abs(got[i]! - ref[i]!) < 1e-37, `${act}(${zr[i]}) = ${got[i]}, want ${ref[i]} (rel ${rel})`);
            }
          }
        }
        tz.dispose();
        tone.dispose();
      });

      it(`${target.title}: an empty inner dimension gives act(bias) in every row`, async () => {
        const [tbias, bias] = await upload(e, randomArray(5, rng(`epilogue-k0-${target.title}`)), [5], target.dtype);
        for (const act of ACTIVATIONS) {
          using c = ops.matmul(e.zeros([3, 0], { dtype: target.dtype }), e.zeros([0, 5], { dtype: target.dtype }), { bias: tbias, activation: act });
          const ref = new Float64Array(15).map((_, i) => linearReference([0], 1, 1, false, [0], 1, 1, false, [bias[i % 5]!], act)[0]!);
          assert.ok(relativeError(await c.toArray(), ref) < target.tol, act);
        }
        tbias.dispose();
      });
    });
  }

  it('rejects a bad bias or activation, naming it', () => {
    using e = Engine.create({ device: 'cpu' });
    using other = Engine.create({ device: 'cpu' });
    using a = e.randn([4, 3]);
    using w = e.randn([5, 3]);
    expectR1VError(() => ops.matmul(a, w, { transB: true, bias: e.randn([4]) }), 'SHAPE', /matmul: bias.*\[5\]/);
    expectR1VError(() => ops.matmul(a, w, { transB: true, bias: e.randn([1, 5]) }), 'SHAPE', /matmul: bias/);
    expectR1VError(() => ops.matmul(a, w, { transB: true, bias: e.randn([5], { dtype: 'f16' }) as never }), 'DTYPE', /matmul: bias has dtype f16/);
    expectR1VError(() => ops.matmul(a, w, { transB: true, bias: other.randn([5]) }), 'DEVICE', /matmul: bias/);
    expectR1VError(() => ops.matmul(a, w, { transB: true, bias: [1, 2, 3, 4, 5] as never }), 'ARGUMENT', /matmul: bias must be a Tensor/);
    const gone = e.randn([5]);
    gone.dispose();
    expectR1VError(() => ops.matmul(a, w, { transB: true, bias: gone }), 'DISPOSED');
    expectR1VError(() => ops.matmul(a, w, { transB: true, activation: 'relu' as never }), 'ARGUMENT', /matmul: activation must be 'none', 'gelu' or 'silu', got 'relu'/);
    expectR1VError(() => ops.matmul(a, w, { transB: true, activation: 1 as never }), 'ARGUMENT', /activation/);
    expectR1VError(() => ops.matmul(a, w, { transB: true, bais: e.randn([5]) } as never), 'ARGUMENT', /unknown option 'bais'/);
  });
});

describe('matmul GEMM backends', () => {
  it('buildInfo reports the cuBLASLt it loaded: none without CUDA or with R1V_CUBLASLT=0', () => {
    const info = buildInfo();
    if (!info.cuda || process.env.R1V_CUBLASLT === '0') assert.equal(info.cublasLt, null);
    else assert.ok(info.cublasLt === null || /libcublasLt\.so/.test(info.cublasLt), String(info.cublasLt));
  });

  // With cuBLASLt loaded the @cuda cases above run through it; this reruns them on the
  // engine's own kernels (and their fused epilogue).
  it('@cuda the engine\'s own kernels pass the same cases with R1V_CUBLASLT=0', function () {
    if (!cudaAvailable() || buildInfo().cublasLt === null || process.env.R1V_CUBLASLT === '0') this.skip();
    this.timeout(600_000);
    const mocha = fileURLToPath(new URL('../node_modules/mocha/bin/mocha.js', import.meta.url));
    const self = fileURLToPath(import.meta.url);
    const result = spawnSync(process.execPath, ['--import', 'tsx', mocha, '--no-config', '--timeout', '300000', self, '--grep', '@cuda'], {
      env: { ...process.env, R1V_CUBLASLT: '0' },
      encoding: 'utf8',
    });
    assert.equal(result.status, 0, `${result.stdout}\n${result.stderr}`);
  });
});

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { buildInfo, Engine, ops } from '../lib/index.js';
import { expectR1VError, matmulCaseError, matmulReference, randomArray, relativeError, rng } from './helpers.js';

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

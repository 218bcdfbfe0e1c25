// CUDA backend tests (@cuda). They run when a GPU is present and are skipped with the
// reason otherwise; `npm run test:gpu` runs only these and fails without a GPU.
import assert from 'node:assert/strict';

import { devices, Engine, ops, type FloatDType } from '../lib/index.js';
import { cudaAvailable, expectR1VError, randomArray, relativeError, rng } from './helpers.js';
import { matmulReference } from './reference/layers.js';

describe('CUDA backend @cuda', function () {
  let gpu: Engine;
  let cpu: Engine;

  before(function () {
    if (!cudaAvailable()) {
      console.log('    CUDA tests skipped: no CUDA device (devices() lists the CPU only)');
      this.skip();
    }
    gpu = Engine.create({ device: 'cuda:0', seed: 11 });
    cpu = Engine.create({ device: 'cpu', seed: 11 });
  });
  after(() => {
    gpu?.dispose();
    cpu?.dispose();
  });

  it('lists the GPU with its properties', () => {
    const cuda = devices().filter((d) => d.kind === 'cuda');
    assert.ok(cuda.length >= 1);
    assert.equal(gpu.device.id, 'cuda:0');
    assert.equal(gpu.device.kind, 'cuda');
  });

  it('round-trips data in every dtype and fills constants', async () => {
    const next = rng('cuda-roundtrip');
    const data = randomArray(1000, next);
    for (const dtype of ['f32', 'bf16', 'f16'] as const) {
      using onCpu = cpu.tensor(data, [10, 100], { dtype });
      using onGpu = gpu.tensor(data, [10, 100], { dtype });
      assert.deepEqual(await onGpu.toArray(), await onCpu.toArray());
      using filled = gpu.full([3, 7], -2.5, { dtype });
      assert.deepEqual(Array.from(filled.toArraySync()), new Array(21).fill(-2.5));
    }
    using ints = gpu.tensor(new Int32Array([1, -2, 3]), [3]);
    assert.deepEqual(Array.from(await ints.toArray()), [1, -2, 3]);
  });

  it('randn matches the CPU draws for the same seed', async () => {
    for (const dtype of ['f32', 'bf16', 'f16'] as const) {
      using a = gpu.randn([1001], { seed: 77, dtype });
      using b = cpu.randn([1001], { seed: 77, dtype });
      const err = relativeError(await a.toArray(), await b.toArray());
      assert.ok(err < (dtype === 'f32' ? 1e-6 : 1e-2), `${dtype}: ${err}`);
    }
  });

  const tolerance: Record<FloatDType, number> = { f32: 1e-5, bf16: 2e-2, f16: 2e-2 };
  for (const dtype of ['f32', 'bf16', 'f16'] as const) {
    it(`matmul ${dtype}: all transposes, odd sizes, batched and broadcast, against float64`, async () => {
      const next = rng(`cuda-matmul-${dtype}`);
      const cases: Array<[number, number, number, number, number]> = [
        // [batchA, batchB, m, n, k]
        [0, 0, 1, 1, 1], [0, 0, 7, 129, 1], [0, 0, 129, 7, 33], [0, 0, 65, 63, 129], [0, 0, 200, 150, 300],
        [3, 3, 17, 31, 65], [4, 0, 9, 11, 6], [1, 3, 6, 2, 5], [0, 2, 5, 3, 8],
      ];
      for (const [batchA, batchB, m, n, k] of cases) {
        for (const transA of [false, true]) {
          for (const transB of [false, true]) {
            const aShape = transA ? [k, m] : [m, k];
            const bShape = transB ? [n, k] : [k, n];
            const ba = Math.max(batchA, 1), bb = Math.max(batchB, 1), batch = Math.max(ba, bb);
            const aFull = batchA ? [batchA, ...aShape] : aShape;
            const bFull = batchB ? [batchB, ...bShape] : bShape;
            // The reference uses the inputs as rounded to the dtype.
            using ta = gpu.tensor(randomArray(ba * m * k, next), aFull, { dtype });
            using tb = gpu.tensor(randomArray(bb * k * n, next), bFull, { dtype });
            const a = await ta.toArray();
            const b = await tb.toArray();
            using c = ops.matmul(ta, tb, { transA, transB });
            const got = await c.toArray();
            for (let i = 0; i < batch; i++) {
              const ai = a.subarray((ba === 1 ? 0 : i) * m * k, ((ba === 1 ? 0 : i) + 1) * m * k);
              const bi = b.subarray((bb === 1 ? 0 : i) * k * n, ((bb === 1 ? 0 : i) + 1) * k * n);
              const ref = matmulReference(ai, aShape[0]!, aShape[1]!, transA, bi, bShape[0]!, bShape[1]!, transB);
              const err = relativeError(got.subarray(i * m * n, (i + 1) * m * n), ref.out);
              assert.ok(err < tolerance[dtype], `${dtype} ${JSON.stringify({ batchA, batchB, m, n, k, transA, transB })}: ${err}`);
            }
          }
        }
      }
    });
  }

  it('K = 0 writes zeros', async () => {
    using c = ops.matmul(gpu.randn([3, 0]), gpu.randn([0, 5]));
    assert.deepEqual(Array.from(await c.toArray()), new Array(15).fill(0));
  });

  it('the caching allocator reuses memory in steady state', async () => {
    using e = Engine.create({ device: 'cuda:0' });
    const step = () => {
      using a = e.randn([512, 512]);
      using b = e.randn([512, 512]);
      using c = ops.matmul(a, b);
      return c.toArraySync().length;
    };
    step();
    await e.synchronize();
    const reserved = e.memoryStats().reservedBytes;
    for (let i = 0; i < 20; i++) step();
    await e.synchronize();
    const stats = e.memoryStats();
    assert.equal(stats.reservedBytes, reserved, 'reserved memory grew in steady state');
    assert.equal(stats.allocatedBytes, 0);
    assert.ok(stats.peakBytes >= 3 * 512 * 512 * 4);
  });

  it('rejects operands on different devices', () => {
    using a = gpu.randn([2, 2]);
    using b = cpu.randn([2, 2]);
    expectR1VError(() => ops.matmul(a, b), 'DEVICE', /different engines/);
  });
});

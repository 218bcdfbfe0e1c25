import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';

import { Engine, type Tensor } from '../lib/index.js';
import { expectR1VError, expectR1VRejection, randomArray, rng } from './helpers.js';
import { bf16BitsToNumber, f16BitsToNumber } from './reference/math.js';

describe('tensors', () => {
  let e: Engine;
  before(() => {
    e = Engine.create({ device: 'cpu', seed: 7 });
  });
  after(() => e.dispose());

  it('round-trips f32 and i32 data and reports shape, dtype, device, numel', async () => {
    const next = rng('roundtrip');
    const data = randomArray(3 * 5 * 7, next);
    using t = e.tensor(data, [3, 5, 7]);
    assert.deepEqual(t.shape, [3, 5, 7]);
    assert.equal(t.dtype, 'f32');
    assert.equal(t.device, 'cpu');
    assert.equal(t.numel, 105);
    assert.deepEqual(await t.toArray(), data);
    assert.deepEqual(t.toArraySync(), data);

    const ints = Int32Array.from({ length: 11 }, () => Math.floor(next() * 2 ** 32) - 2 ** 31);
    using ti = e.tensor(ints, [11]);
    assert.equal(ti.dtype, 'i32');
    assert.deepEqual(await ti.toArray(), ints);

    using fromNumbers = e.tensor([1.25, -2, 3e-3], [3]);
    assert.deepEqual(Array.from(await fromNumbers.toArray()), [1.25, -2, Math.fround(3e-3)]);
    using fromF64 = e.tensor(new Float64Array([0.1, 7]), [2, 1]);
    assert.deepEqual(Array.from(fromF64.toArraySync()), [Math.fround(0.1), 7]);
    const shared = new Float32Array(new SharedArrayBuffer(40)).fill(2.5).subarray(3, 7);
    using fromShared = e.tensor(shared, [4]);
    assert.deepEqual(Array.from(await fromShared.toArray()), [2.5, 2.5, 2.5, 2.5]);
    using fromSubarray = e.tensor(data.subarray(5, 8), [3]);
    assert.deepEqual(await fromSubarray.toArray(), data.slice(5, 8));
    using scalar = e.tensor([5], []);
    assert.deepEqual(scalar.shape, []);
    assert.equal(scalar.numel, 1);
    using empty = e.zeros([0, 4]);
    assert.equal((await empty.toArray()).length, 0);
  });

  it('fills zeros, ones and constants in every dtype', async () => {
    for (const dtype of ['f32', 'bf16', 'f16', 'i32'] as const) {
      using z = e.zeros([4, 3], { dtype });
      using o = e.ones([5], { dtype });
      using f = e.full([2, 2], -3, { dtype });
      assert.deepEqual(Array.from(await z.toArray()), new Array(12).fill(0));
      assert.deepEqual(Array.from(await o.toArray()), new Array(5).fill(1));
      assert.deepEqual(Array.from(await f.toArray()), new Array(4).fill(-3));
      assert.equal(z.dtype, dtype);
    }
  });

  it('rounds f32 to bf16 to nearest even (hand-computed bit patterns)', () => {
    const cases: Array<[number, number]> = [
      [1.00390625, 0x3f80], // exactly halfway between 0x3f80 and 0x3f81: ties to even (down)
      [1.01171875, 0x3f82], // halfway between 0x3f81 and 0x3f82: ties to even (up)
      [1.00390625 + 2 ** -20, 0x3f81], // just above halfway: up
      [-2.5, 0xc020],
      [3.4028234663852886e38, 0x7f80], // largest f32 rounds up to +Inf
      [-3.4028234663852886e38, 0xff80],
      [1e-40, 0x0001], // f32 subnormal keeps its top bits
      [Infinity, 0x7f80],
      [-Infinity, 0xff80],
      [0.1, 0x3dcd],
    ];
    using t = e.tensor(cases.map(([v]) => v), [cases.length], { dtype: 'bf16' });
    const back = t.toArraySync();
    cases.forEach(([input, bits], i) => {
      assert.equal(back[i], bf16BitsToNumber(bits), `bf16(${input}) should be 0x${bits.toString(16)}`);
    });
    using nan = e.tensor([NaN, -NaN], [2], { dtype: 'bf16' });
    assert.ok(nan.toArraySync().every(Number.isNaN));
  });

  it('rounds f32 to f16 to nearest even, including subnormals and overflow', () => {
    const cases: Array<[number, number]> = [
      [1 + 2 ** -11, 0x3c00], // halfway: ties to even (down)
      [1 + 3 * 2 ** -11, 0x3c02], // halfway: ties to even (up)
      [65504, 0x7bff], // largest half
      [65519, 0x7bff], // below the halfway point to 2^16
      [65520, 0x7c00], // halfway to 2^16: rounds to even = Inf
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // halfway between 0 and the smallest subnormal: to even (0)
      [3 * 2 ** -25, 0x0002], // halfway between 1 and 2 subnormal units: to even (2)
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -14 - 2 ** -25, 0x0400], // halfway between the largest subnormal and the smallest normal
      [0.1, 0x2e66],
      [-1.5, 0xbe00],
      [1e6, 0x7c00],
      [-Infinity, 0xfc00],
    ];
    using t = e.tensor(cases.map(([v]) => v), [cases.length], { dtype: 'f16' });
    const back = t.toArraySync();
    cases.forEach(([input, bits], i) => {
      assert.equal(back[i], f16BitsToNumber(bits), `f16(${input}) should be 0x${bits.toString(16)}`);
    });
    using negZero = e.tensor([-0], [1], { dtype: 'f16' });
    assert.ok(Object.is(negZero.toArraySync()[0], -0));
    using nan = e.tensor([NaN], [1], { dtype: 'f16' });
    assert.ok(Number.isNaN(nan.toArraySync()[0]));
  });

  it('every bf16 and f16 value survives a round trip, NaN and Inf included', () => {
    for (const [dtype, decode] of [['bf16', bf16BitsToNumber], ['f16', f16BitsToNumber]] as const) {
      const values = Float32Array.from({ length: 65536 }, (_, bits) => decode(bits));
      using t = e.tensor(values, [65536], { dtype });
      const back = t.toArraySync();
      for (let bits = 0; bits < 65536; bits++) {
        const want = values[bits]!;
        const got = back[bits]!;
        if (Number.isNaN(want)) assert.ok(Number.isNaN(got), `${dtype} NaN 0x${bits.toString(16)}`);
        else assert.ok(Object.is(got, want), `${dtype} 0x${bits.toString(16)}: ${got} !== ${want}`);
      }
    }
  });

  it('rejects data that does not fit the shape or dtype', () => {
    expectR1VError(() => e.tensor([1, 2, 3], [2, 2]), 'SHAPE', /3 elements.*\[2, 2\]/);
    expectR1VError(() => e.tensor([1, 2], [-2]), 'SHAPE', /shape\[0\]/);
    expectR1VError(() => e.tensor([1, 2], [2.5]), 'SHAPE', /shape\[0\]/);
    expectR1VError(() => e.tensor([1.5], [1], { dtype: 'i32' }), 'ARGUMENT', /data\[0\].*i32/);
    expectR1VError(() => e.tensor([2 ** 40], [1], { dtype: 'i32' }), 'ARGUMENT', /data\[0\]/);
    expectR1VError(() => e.tensor([1], [1], { dtype: 'f64' as 'f32' }), 'DTYPE', /f64/);
    expectR1VError(() => e.tensor(['1'] as unknown as number[], [1]), 'ARGUMENT', /data\[0\]/);
    expectR1VError(() => e.tensor(new Uint8Array(2) as unknown as Float32Array, [2]), 'ARGUMENT', /data/);
    expectR1VError(() => e.zeros([2 ** 40, 2 ** 40]), 'SHAPE', /too many/);
    expectR1VError(() => e.zeros([1, 2, 3, 4, 5, 6, 7, 8, 9]), 'SHAPE', /at most 8/);
    expectR1VError(() => e.randn([2], { dtype: 'i32' as 'f32' }), 'DTYPE', /randn/);
  });

  it('refuses host allocations larger than the machine', () => {
    expectR1VError(() => e.zeros([2 ** 26, 2 ** 26]), 'OOM');
  });

  it('a readback longer than a typed array can hold (2^32 elements) is an R1VError, in a child process', function () {
    // A 16 GiB f32 tensor that is never written: scatterAddRows of a source carrying an op's
    // error skips its work, so the memory stays untouched (virtual).
    if (totalmem() < 17 * 2 ** 30) this.skip();
    const lib = fileURLToPath(new URL('../lib/index.js', import.meta.url));
    const code = `
      import { Engine, ops } from ${JSON.stringify(lib)};
      const e = Engine.create({ device: 'cpu' });
      const failed = ops.linearTokenStats(e.randn([4, 8]), e.randn([16, 8]), e.tensor(new Int32Array([0, 99, 1, 2]), [4]));
      const big = ops.scatterAddRows(ops.reshape(failed.logprobs, [1, 4]), e.tensor(new Int32Array([0]), [1]), 2 ** 30 + 1);
      const report = (err) => ({ code: err.code, message: err.message });
      const out = { numel: big.numel, shape: big.shape };
      out.async = await big.toArray().then(() => 'resolved', report);
      try { big.toArraySync(); out.sync = 'returned'; } catch (err) { out.sync = report(err); }
      e.dispose();
      console.log(JSON.stringify(out));`;
    const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { encoding: 'utf8' });
    assert.equal(run.status, 0, `status ${run.status}, signal ${run.signal}\n${run.stderr}`);
    const out = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
    assert.equal(out.numel, 2 ** 32 + 4);
    assert.deepEqual(out.shape, [2 ** 30 + 1, 4]);
    for (const how of ['async', 'sync']) {
      const err = out[how] as { code: string; message: string };
      assert.equal(err.code, 'ARGUMENT', JSON.stringify(err));
      assert.match(err.message, /toArray: the tensor has 4294967300 elements, more than the 4294967296 a JavaScript typed array can hold/);
    }
  });

  it('dispose frees memory once; a disposed tensor throws DISPOSED', async () => {
    using local = Engine.create({ device: 'cpu' });
    const before = local.memoryStats().allocatedBytes;
    const t = local.zeros([1000]);
    assert.ok(local.memoryStats().allocatedBytes >= before + 4000);
    t.dispose();
    t.dispose();
    assert.equal(t.disposed, true);
    await local.synchronize(); // the queued fill held the memory until it ran
    assert.equal(local.memoryStats().allocatedBytes, before);
    expectR1VError(() => t.shape, 'DISPOSED');
    expectR1VError(() => t.toArraySync(), 'DISPOSED');
    await expectR1VRejection(t.toArray(), 'DISPOSED');
    {
      using scoped = local.ones([256]);
      assert.equal(scoped.numel, 256);
    }
    await local.synchronize();
    assert.equal(local.memoryStats().allocatedBytes, before);
    assert.ok(local.memoryStats().peakBytes >= 4000);
  });

  it('engine dispose frees every tensor it made', () => {
    const local = Engine.create({ device: 'cpu' });
    const kept: Tensor[] = [local.zeros([100]), local.randn([10, 10])];
    assert.ok(local.memoryStats().allocatedBytes > 0);
    local.dispose();
    assert.equal(local.memoryStats().allocatedBytes, 0);
    assert.ok(kept.every((t) => t.disposed));
    expectR1VError(() => kept[0]!.toArraySync(), 'DISPOSED');
  });

  it('a disposed engine gives its host memory back to the system (RSS of a child process)', function () {
    this.timeout(120_000);
    // A sanitizer's allocator (README, "Checking builds") replaces glibc's: its RSS says nothing here.
    if (/lib[a-z]san/.test(process.env.LD_PRELOAD ?? '')) this.skip();
    const script = fileURLToPath(new URL('./fixtures/host-memory-return.ts', import.meta.url));
    const seed = String(Math.floor(rng('host-memory')() * 2 ** 31));
    const run = spawnSync(process.execPath, ['--import', 'tsx', script], {
      env: { ...process.env, R1V_TEST_SEED: seed }, encoding: 'utf8',
    });
    assert.equal(run.status, 0, run.stderr);
    const r = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as {
      before: number; peak: number; after: number; samples: Array<{ value: number; read: number[] }>;
    };
    const mib = (x: number) => `${(x / 2 ** 20).toFixed(0)} MiB`;
    const what = `R1V_TEST_SEED=${seed}: RSS ${mib(r.before)} before, ${mib(r.peak)} with the tensors, ${mib(r.after)} after dispose`;
    assert.ok(r.peak - r.before >= 0.9 * 2 ** 30, what);  // the tensors were written
    assert.ok(r.after <= 1.1 * r.before, what);
    assert.ok(r.samples.length >= 3);
    for (const { value, read } of r.samples) assert.deepEqual(read, [value, value, value]);
  });

  it('frees tensors that are garbage-collected without dispose', async function () {
    const gc = (globalThis as { gc?: () => void }).gc;
    if (!gc) this.skip();
    using local = Engine.create({ device: 'cpu' });
    (() => {
      for (let i = 0; i < 50; i++) local.zeros([1 << 14]);
    })();
    assert.ok(local.memoryStats().allocatedBytes >= 50 * 4 * (1 << 14));
    for (let round = 0; round < 20 && local.memoryStats().allocatedBytes > 0; round++) {
      gc!();
      await new Promise((resolve) => setImmediate(resolve));
    }
    assert.equal(local.memoryStats().allocatedBytes, 0);
  });
});

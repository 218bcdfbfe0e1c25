// tokenStats / linearTokenStats benchmarks. tokenStats is memory bound (GB/s of logits read,
// plus dLogits written for the backward); linearTokenStats is GEMM bound (TFLOP/s of its
// products) and is reported with its peak extra memory against the N·V·4 bytes of f32 logits.
import { DTYPE_BYTES, type FloatDType } from '../../core/tensor.js';
import * as ops from '../../ops/index.js';
import type { BenchContext } from '../common.js';

const VOCAB = 151_674;

function targetsFor(ctx: BenchContext, n: number, v: number) {
  const ids = new Int32Array(n);
  for (let i = 0; i < n; i++) ids[i] = (i * 7919) % v;
  return ctx.engine.tensor<'i32'>(ids, [n]);
}

async function benchTokenStats(ctx: BenchContext, n: number, v: number, dtype: FloatDType): Promise<void> {
  const e = ctx.engine;
  using logits = e.randn([n, v], { dtype });
  using targets = targetsFor(ctx, n, v);
  using dl = e.randn([n]);
  using de = e.randn([n]);
  const shape = `N=${n} V=${v}`;
  const logitsBytes = n * v * DTYPE_BYTES[dtype];
  const fwd = await ctx.time(`tokenStats ${dtype} ${shape}`, async () => {
    const r = ops.tokenStats(logits, targets);
    await e.synchronize();
    r.logprobs.dispose();
    r.entropy.dispose();
  });
  ctx.record({ op: 'tokenStats', dtype, shape, ms: fwd, bytes: logitsBytes, note: 'bytes: logits read once' });
  const bwd = await ctx.time(`tokenStatsBackward ${dtype} ${shape}`, async () => {
    const dz = ops.tokenStatsBackward(logits, targets, dl, de);
    await e.synchronize();
    dz.dispose();
  });
  ctx.record({
    op: 'tokenStatsBackward', dtype, shape, ms: bwd, bytes: 3 * logitsBytes,
    note: 'bytes: logits read twice (statistics, gradient) + dLogits written',
  });
}

async function benchLinear(ctx: BenchContext, n: number, hd: number, v: number, dtype: FloatDType): Promise<void> {
  const e = ctx.engine;
  using hidden = e.randn([n, hd], { dtype });
  using weight = e.randn([v, hd], { dtype });
  using targets = targetsFor(ctx, n, v);
  using dl = e.randn([n]);
  using de = e.randn([n]);
  await e.synchronize();
  const shape = `N=${n} Hd=${hd} V=${v}`;
  const gemmFlops = 2 * n * v * hd;
  const logitsBytes = n * v * 4;
  const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

  // Peak memory above what is allocated before the call, outputs included.
  const extraPeak = async (fn: () => Promise<void>): Promise<number> => {
    await e.synchronize();
    const before = e.memoryStats().allocatedBytes;
    e.resetPeakMemory();
    await fn();
    return e.memoryStats().peakBytes - before;
  };

  const fwdOnce = async () => {
    const r = ops.linearTokenStats(hidden, weight, targets);
    await e.synchronize();
    r.logprobs.dispose();
    r.entropy.dispose();
  };
  const fwdExtra = await extraPeak(fwdOnce);
  const fwd = await ctx.time(`linearTokenStats ${dtype} ${shape}`, fwdOnce);
  ctx.record({
    op: 'linearTokenStats', dtype, shape, ms: fwd, flops: gemmFlops,
    note: `peak extra ${mib(fwdExtra)} vs N·V·4 = ${mib(logitsBytes)}`,
  });

  const bwdOnce = async () => {
    const g = ops.linearTokenStatsBackward(hidden, weight, targets, dl, de);
    await e.synchronize();
    g.dHidden.dispose();
    g.dWeight.dispose();
  };
  const bwdExtra = await extraPeak(bwdOnce);
  const bwd = await ctx.time(`linearTokenStatsBackward ${dtype} ${shape}`, bwdOnce);
  ctx.record({
    op: 'linearTokenStatsBackward', dtype, shape, ms: bwd, flops: 4 * gemmFlops,
    note: `4 GEMMs (statistics, recompute, dHidden, dWeight); peak extra ${mib(bwdExtra)} incl. dWeight vs N·V·4 = ${mib(logitsBytes)}`,
  });
}

export async function run(ctx: BenchContext): Promise<void> {
  if (ctx.full) {
    const dtypes: FloatDType[] = ctx.engine.device.kind === 'cpu' ? ['f32'] : ['bf16', 'f32'];
    for (const dtype of dtypes) {
      for (const n of [8192, 16384]) await benchTokenStats(ctx, n, VOCAB, dtype);
    }
    for (const dtype of dtypes) {
      for (const hd of [896, 3584]) {
        for (const n of [8192, 16384]) await benchLinear(ctx, n, hd, VOCAB, dtype);
      }
    }
    return;
  }
  await benchTokenStats(ctx, 256, VOCAB, 'f32');
  await benchLinear(ctx, 256, 896, 32_768, 'f32');
}

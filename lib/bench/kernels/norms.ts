// rmsNorm / layerNorm benchmarks: memory bound, reported in GB/s of the minimal traffic
// (forward: x read, y written; backward: x and dY read, dx written).
import { DTYPE_BYTES, type FloatDType } from '../../core/tensor.js';
import * as ops from '../../ops/index.js';
import type { BenchContext } from '../common.js';


async function benchNorms(ctx: BenchContext, n: number, d: number, dtype: FloatDType): Promise<void> {
  const e = ctx.engine;
  using x = e.randn([n, d], { dtype });
  using weight = e.randn([d], { dtype });
  using bias = e.randn([d], { dtype });
  using dY = e.randn([n, d], { dtype });
  const shape = `N=${n} D=${d}`;
  const tensorBytes = n * d * DTYPE_BYTES[dtype];
  const rms = ops.rmsNorm(x, weight);
  const ln = ops.layerNorm(x, weight, bias);
  await e.synchronize();

  const rmsMs = await ctx.time(`rmsNorm ${dtype} ${shape}`, async () => {
    const r = ops.rmsNorm(x, weight);
    await e.synchronize();
    r.y.dispose();
    r.rstd.dispose();
  });
  ctx.record({ op: 'rmsNorm', dtype, shape, ms: rmsMs, bytes: 2 * tensorBytes, note: 'bytes: x read, y written' });
  const rmsBwdMs = await ctx.time(`rmsNormBackward ${dtype} ${shape}`, async () => {
    const g = ops.rmsNormBackward(x, weight, rms.rstd, dY);
    await e.synchronize();
    g.dx.dispose();
    g.dWeight.dispose();
  });
  ctx.record({ op: 'rmsNormBackward', dtype, shape, ms: rmsBwdMs, bytes: 3 * tensorBytes, note: 'bytes: x, dY read, dx written' });

  const lnMs = await ctx.time(`layerNorm ${dtype} ${shape}`, async () => {
    const r = ops.layerNorm(x, weight, bias);
    await e.synchronize();
    r.y.dispose();
    r.mean.dispose();
    r.rstd.dispose();
  });
  ctx.record({ op: 'layerNorm', dtype, shape, ms: lnMs, bytes: 2 * tensorBytes, note: 'bytes: x read, y written' });
  const lnBwdMs = await ctx.time(`layerNormBackward ${dtype} ${shape}`, async () => {
    const g = ops.layerNormBackward(x, weight, ln.mean, ln.rstd, dY);
    await e.synchronize();
    g.dx.dispose();
    g.dWeight.dispose();
    g.dBias.dispose();
  });
  ctx.record({ op: 'layerNormBackward', dtype, shape, ms: lnBwdMs, bytes: 3 * tensorBytes, note: 'bytes: x, dY read, dx written' });
  [rms.y, rms.rstd, ln.y, ln.mean, ln.rstd].forEach((t) => t.dispose());
}

export async function run(ctx: BenchContext): Promise<void> {
  if (ctx.full) {
    const dtypes: FloatDType[] = ctx.engine.device.kind === 'cpu' ? ['f32'] : ['bf16', 'f32'];
    // Qwen2 hidden sizes (0.5B, 7B) and InternViT-300M's width
    for (const dtype of dtypes) {
      for (const d of [896, 1024, 3584]) {
        for (const n of [8192, 16384]) await benchNorms(ctx, n, d, dtype);
      }
    }
    return;
  }
  await benchNorms(ctx, 4096, 896, 'f32');
  await benchNorms(ctx, 2048, 3584, 'f32');
}

// rope / swiglu / embedding benchmarks. All are memory bound: reported in GB/s of the bytes
// each call must move (inputs read once, outputs written once).
import { DTYPE_BYTES, type FloatDType } from '../../core/tensor.js';
import * as ops from '../../ops/index.js';
import type { BenchContext } from '../common.js';


async function benchRope(ctx: BenchContext, t: number, h: number, d: number, dtype: FloatDType): Promise<void> {
  const e = ctx.engine;
  using x = e.randn([t, h, d], { dtype });
  using pos = e.tensor<'i32'>(Int32Array.from({ length: t }, (_, i) => i), [t]);
  const shape = `T=${t} H=${h} D=${d}`;
  const ms = await ctx.time(`rope ${dtype} ${shape}`, async () => {
    const y = ops.rope(x, pos, { theta: 1e6 });
    await e.synchronize();
    y.dispose();
  });
  ctx.record({ op: 'rope', dtype, shape, ms, bytes: 2 * t * h * d * DTYPE_BYTES[dtype], note: 'bytes: x read + y written' });
}

async function benchSwiglu(ctx: BenchContext, n: number, f: number, dtype: FloatDType): Promise<void> {
  const e = ctx.engine;
  using gate = e.randn([n, f], { dtype });
  using up = e.randn([n, f], { dtype });
  using dy = e.randn([n, f], { dtype });
  const shape = `N=${n} F=${f}`;
  const size = n * f * DTYPE_BYTES[dtype];
  const fwd = await ctx.time(`swiglu ${dtype} ${shape}`, async () => {
    const y = ops.swiglu(gate, up);
    await e.synchronize();
    y.dispose();
  });
  ctx.record({ op: 'swiglu', dtype, shape, ms: fwd, bytes: 3 * size, note: 'bytes: gate, up read + y written' });
  const bwd = await ctx.time(`swigluBackward ${dtype} ${shape}`, async () => {
    const g = ops.swigluBackward(gate, up, dy);
    await e.synchronize();
    g.dGate.dispose();
    g.dUp.dispose();
  });
  ctx.record({ op: 'swigluBackward', dtype, shape, ms: bwd, bytes: 5 * size, note: 'bytes: 3 read + 2 written' });
}

async function benchEmbedding(ctx: BenchContext, t: number, v: number, h: number, dtype: FloatDType): Promise<void> {
  const e = ctx.engine;
  using table = e.randn([v, h], { dtype });
  using dy = e.randn([t, h], { dtype });
  using ids = e.tensor<'i32'>(Int32Array.from({ length: t }, (_, i) => (i * 7919) % v), [t]);
  const shape = `T=${t} V=${v} H=${h}`;
  const fwd = await ctx.time(`embedding ${dtype} ${shape}`, async () => {
    const out = ops.embedding(ids, table);
    await e.synchronize();
    out.dispose();
  });
  ctx.record({ op: 'embedding', dtype, shape, ms: fwd, bytes: 2 * t * h * DTYPE_BYTES[dtype], note: 'bytes: rows read + written' });
  const bwd = await ctx.time(`embeddingBackward ${dtype} ${shape}`, async () => {
    const d = ops.embeddingBackward(ids, dy, v);
    await e.synchronize();
    d.dispose();
  });
  ctx.record({
    op: 'embeddingBackward', dtype, shape, ms: bwd, bytes: (t * h + v * h) * DTYPE_BYTES[dtype],
    note: 'bytes: dY read + dTable written (zeroing included)',
  });
}

export async function run(ctx: BenchContext): Promise<void> {
  const dtypes: FloatDType[] = ctx.engine.device.kind === 'cpu' ? ['f32'] : ['f32', 'bf16'];
  // Qwen2-7B: 28 query heads of D = 128, F = 18944, H = 3584, V = 151936; 4096 packed tokens.
  const t = ctx.full ? 4096 : 1024;
  for (const dtype of dtypes) {
    await benchRope(ctx, t, ctx.full ? 28 : 14, ctx.full ? 128 : 64, dtype);
    await benchSwiglu(ctx, t, ctx.full ? 18944 : 4864, dtype);
    await benchEmbedding(ctx, t, ctx.full ? 151936 : 32000, ctx.full ? 3584 : 896, dtype);
  }
}

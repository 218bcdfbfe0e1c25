// Attention benchmarks: forward and backward, dense, causal and not, head dims 64 and 128.
// GPU (ctx.full): B·S = 16k tokens, S ∈ {1k, 4k, 8k}, 2048 = H·D channels, bf16.
// CPU (reduced): B·S = 2k tokens, S ∈ {512, 2k}, H = 8, f32 — about a minute on 2 cores.
// FLOPs: 4·B·S²·H·D forward (half when causal), backward 2.5× that. Each row also gives
// the ratio to the GEMM rate measured here on the same device and dtype.
import type { Tensor } from '../../core/tensor.js';
import * as ops from '../../ops/index.js';
import type { BenchContext } from '../common.js';

type Dtype = 'f32' | 'bf16';

// The engine's own GEMM (the built-in kernel on the CPU) on a square product, GFLOP/s.
async function gemmGflops(ctx: BenchContext, dtype: Dtype): Promise<number> {
  const cpu = ctx.engine.device.kind === 'cpu';
  const n = cpu ? 2048 : 8192;
  using a = ctx.engine.randn([n, n], { dtype });
  using b = ctx.engine.randn([n, n], { dtype });
  if (cpu) ctx.engine.setCpuGemm('builtin');
  const ms = await ctx.time(`matmul ${n}³`, async () => {
    using _c = ops.matmul(a, b);
    await ctx.engine.synchronize();
  });
  if (cpu) ctx.engine.setCpuGemm('auto');
  const gflops = (2 * n ** 3) / (ms * 1e6);
  ctx.log(`  reference GEMM ${dtype} ${n}³${cpu ? ' (built-in)' : ''}: ${gflops.toFixed(1)} GFLOP/s`);
  return gflops;
}

export async function run(ctx: BenchContext): Promise<void> {
  const e = ctx.engine;
  const dtype: Dtype = ctx.full && e.device.kind === 'cuda' ? 'bf16' : 'f32';
  const tokens = ctx.full ? 16384 : 2048;
  const seqs = ctx.full ? [1024, 4096, 8192] : [512, 2048];
  const gemm = await gemmGflops(ctx, dtype);

  for (const d of [64, 128]) {
    const h = ctx.full ? 2048 / d : 8;
    for (const s of seqs) {
      const b = tokens / s;
      const shape = [b, s, h, d];
      using q = e.randn(shape, { dtype });
      using k = e.randn(shape, { dtype });
      using v = e.randn(shape, { dtype });
      using dOut = e.randn(shape, { dtype });
      for (const causal of [false, true]) {
        const label = `B=${b} S=${s} H=${h} D=${d}${causal ? ' causal' : ''}`;
        const fwdFlops = (4 * b * s * s * h * d) / (causal ? 2 : 1);
        const note = (ms: number, flops: number) => `${((100 * flops) / (ms * 1e6) / gemm).toFixed(0)}% of GEMM`;

        const fwdMs = await ctx.time(`attention ${label}`, async () => {
          const r = ops.attention(q, k, v, { causal });
          using _o = r.out;
          using _l = r.lse;
          await e.synchronize();
        });
        ctx.record({ op: 'attention', dtype, shape: label, ms: fwdMs, flops: fwdFlops, note: note(fwdMs, fwdFlops) });

        const { out, lse }: { out: Tensor<Dtype>; lse: Tensor<'f32'> } = ops.attention(q, k, v, { causal });
        using _o = out;
        using _l = lse;
        const bwdMs = await ctx.time(`attentionBackward ${label}`, async () => {
          const g = ops.attentionBackward(q, k, v, out, lse, dOut, { causal });
          using _q = g.dq;
          using _k = g.dk;
          using _v = g.dv;
          await e.synchronize();
        });
        const bwdFlops = 2.5 * fwdFlops;
        ctx.record({ op: 'attentionBackward', dtype, shape: label, ms: bwdMs, flops: bwdFlops, note: note(bwdMs, bwdFlops) });
      }
    }
  }
}

// matmul benchmarks: square f32 GEMMs and Linear-shaped products x·Wᵀ + b with GELU
// (PyTorch weight layout, the epilogue fused), rows at flops = 2·M·N·K.
// CPU (reduced): f32 squares 1024, 2048 and x [2048, 4096]·W [896, 4096]ᵀ, and decode-shaped
// products (1–4 rows through a Linear) reported in GB/s of weights read, since they are bound
// by reading W once.
// GPU / full: bf16 (and f32) squares up to 8192 and the vision-tower / LM shapes below.
import { buildInfo } from '../../core/device.js';
import type { FloatDType } from '../../core/tensor.js';
import * as ops from '../../ops/index.js';
import type { BenchContext } from '../common.js';

interface Case {
  /** x [m, k] · W [n, k]ᵀ (linear), or a [m, k] · b [k, n] (square). Decode-shaped linears (m ≤ 4) report GB/s. */
  m: number;
  n: number;
  k: number;
  linear: boolean;
  dtype: FloatDType;
}

function cases(ctx: BenchContext): Case[] {
  const cpu = ctx.engine.device.kind === 'cpu';
  const square = (s: number, dtype: FloatDType): Case => ({ m: s, n: s, k: s, linear: false, dtype });
  const linear = (m: number, n: number, k: number, dtype: FloatDType): Case => ({ m, n, k, linear: true, dtype });
  // Decode steps: one row through the LM head of a 16k-vocabulary model, four through Qwen2.5-0.5B's MLP up-projection.
  const decode = [linear(1, 16384, 512, 'f32'), linear(4, 4864, 896, 'f32')];
  if (cpu && !ctx.full) return [square(1024, 'f32'), square(2048, 'f32'), linear(2048, 896, 4096, 'f32'), ...decode];
  if (cpu) return [square(1024, 'f32'), square(2048, 'f32'), square(4096, 'f32'), linear(2048, 896, 4096, 'f32'), linear(4096, 4096, 4096, 'f32'), ...decode];
  return [
    square(4096, 'f32'),
    square(2048, 'bf16'), square(4096, 'bf16'), square(8192, 'bf16'), square(8192, 'f16'),
    linear(2048, 896, 4096, 'bf16'), // vision tokens → connector width
    linear(8192, 4096, 4096, 'bf16'),
    linear(8192, 14336, 4096, 'bf16'), // MLP up-projection
    linear(8192, 4096, 14336, 'bf16'), // MLP down-projection
  ];
}

export async function run(ctx: BenchContext): Promise<void> {
  const e = ctx.engine;
  // CPU: the built-in kernel (epilogue fused) and, when loaded, BLAS (epilogue as a pass).
  const backends = e.device.kind === 'cpu' ? (['builtin', ...(buildInfo().blas ? (['blas'] as const) : [])] as const) : ([undefined] as const);
  for (const backend of backends) {
    if (backend) e.setCpuGemm(backend);
    await runCases(ctx, backend ? `CPU GEMM ${backend}` : buildInfo().cublasLt ? 'cuBLASLt' : 'own kernels');
  }
  if (e.device.kind === 'cpu') e.setCpuGemm('auto');
}

async function runCases(ctx: BenchContext, backendNote: string): Promise<void> {
  const e = ctx.engine;
  for (const { m, n, k, linear, dtype } of cases(ctx)) {
    const a = e.randn([m, k], { dtype, seed: 1 });
    const b = linear ? e.randn([n, k], { dtype, seed: 2 }) : e.randn([k, n], { dtype, seed: 2 });
    const bias = e.randn([n], { dtype, seed: 3 });
    const big = 2 * m * n * k >= 6e10;
    const options = { minTimeMs: big ? 1500 : 400, iterations: big ? 2 : 3 };
    const flops = 2 * m * n * k;
    if (linear && m <= 4) {
      const shape = `x[${m},${k}]·W[${n},${k}]ᵀ`;
      const ms = await ctx.time(`matmul ${shape} (decode)`, async () => {
        ops.matmul(a, b, { transB: true }).dispose();
        await e.synchronize();
      }, options);
      ctx.record({ op: 'matmul (decode)', dtype, shape, ms, bytes: n * k * 4, note: `${backendNote}; GB/s of W read` });
    } else if (linear) {
      const shape = `x[${m},${k}]·W[${n},${k}]ᵀ`;
      const plain = await ctx.time(`matmul ${shape}`, async () => {
        ops.matmul(a, b, { transB: true }).dispose();
        await e.synchronize();
      }, options);
      ctx.record({ op: 'matmul', dtype, shape, ms: plain, flops, note: backendNote });
      const fused = await ctx.time(`matmul ${shape} +b gelu`, async () => {
        ops.matmul(a, b, { transB: true, bias, activation: 'gelu' }).dispose();
        await e.synchronize();
      }, options);
      ctx.record({
        op: 'matmul+bias+gelu', dtype, shape, ms: fused, flops,
        note: `${backendNote}; epilogue ${(((fused - plain) / plain) * 100).toFixed(1)}% time vs plain`,
      });
    } else {
      const shape = `${m}x${n}x${k}`;
      const ms = await ctx.time(`matmul ${shape}`, async () => {
        ops.matmul(a, b).dispose();
        await e.synchronize();
      }, options);
      ctx.record({ op: 'matmul', dtype, shape, ms, flops, note: backendNote });
    }
    a.dispose();
    b.dispose();
    bias.dispose();
  }
}

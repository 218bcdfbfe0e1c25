// Optimizer kernels over the decoder parameters of Qwen2.5-0.5B (the LM of InternVL3-1B):
// per layer q/k/v/o projections with q/k/v biases, a SwiGLU MLP and two RMSNorms
// (hidden 896, 2 KV heads of 128, intermediate 4864); embeddings left out. Full: all 24
// layers (bf16 params with f32 master on CUDA); the CPU's reduced set: 1 layer in f32.
// bytes: adamwStep reads grad, m, v and the weights and writes m, v, weights (and param
// beside a master); sumOfSquares reads every gradient once.
import { DTYPE_BYTES, type FloatDType, type Tensor } from '../../core/tensor.js';
import * as ops from '../../ops/index.js';
import type { AdamWGroup } from '../../ops/optimizer.js';
import type { BenchContext } from '../common.js';

const HIDDEN = 896;
const KV = 2 * 128;
const INTERMEDIATE = 4864;

/** [shape, weight decay] of one decoder layer's parameters. */
function layerShapes(): Array<[number[], number]> {
  return [
    [[HIDDEN, HIDDEN], 0.1], [[HIDDEN], 0], [[KV, HIDDEN], 0.1], [[KV], 0], [[KV, HIDDEN], 0.1], [[KV], 0],
    [[HIDDEN, HIDDEN], 0.1], [[INTERMEDIATE, HIDDEN], 0.1], [[INTERMEDIATE, HIDDEN], 0.1], [[HIDDEN, INTERMEDIATE], 0.1],
    [[HIDDEN], 0], [[HIDDEN], 0],
  ];
}

export async function run(ctx: BenchContext): Promise<void> {
  const e = ctx.engine;
  const onCpu = e.device.kind === 'cpu';
  const layers = ctx.full ? 24 : 1;
  const dtype: FloatDType = onCpu ? 'f32' : 'bf16';
  const withMaster = dtype !== 'f32';
  const groups: AdamWGroup[] = [];
  for (let l = 0; l < layers; l++) {
    for (const [shape, weightDecay] of layerShapes()) {
      groups.push({
        param: e.randn(shape, { dtype }), grad: e.randn(shape, { dtype }), m: e.zeros(shape), v: e.zeros(shape),
        ...(withMaster ? { master: e.randn(shape) } : {}), weightDecay,
      });
    }
  }
  const numel = groups.reduce((s, g) => s + g.param.numel, 0);
  const size = DTYPE_BYTES[dtype];
  const shape = `Qwen2.5-0.5B ${layers} layer(s): ${groups.length} tensors, ${(numel / 1e6).toFixed(1)}M params`;

  const sumMs = await ctx.time(`sumOfSquares ${shape}`, async () => {
    using s = ops.sumOfSquares(groups.map((g) => g.grad));
    await e.synchronize();
  });
  ctx.record({ op: 'sumOfSquares', dtype, shape, ms: sumMs, bytes: numel * size });

  let step = 0;
  const stepMs = await ctx.time(`adamwStep ${shape}`, async () => {
    ops.adamwStep(groups, { lr: 1e-5, step: ++step, weightDecay: 0.1 });
    await e.synchronize();
  });
  // grad + m, v read and written + weights (f32 master, or f32 param) read and written (+ 16-bit param written).
  const bytes = numel * (size + 16 + 8 + (withMaster ? size : 0));
  ctx.record({ op: 'adamwStep', dtype: withMaster ? `${dtype}+f32 master` : dtype, shape, ms: stepMs, bytes,
    note: onCpu ? undefined : 'one launch' });

  for (const g of groups) for (const t of Object.values(g) as Array<Tensor | number>) if (typeof t !== 'number') t.dispose();
}

// connector (InternVL's mlp1) forward and backward at the InternVL3 projector shapes:
// 256 tokens per 448² tile (h = w = 32 patches of C = 1024), H = 896 (1B) or 3584 (8B).
// flops: forward 2·T·(4C·H + H·H) (the two Linears); backward 2× that (the input and weight
// gradients of both; the forward is recomputed inside, so the op does 1.5× the forward's
// GEMM work beyond this count, which is not credited).
import type { FloatDType, Tensor } from '../../core/tensor.js';
import * as ops from '../../ops/index.js';
import type { ConnectorParams } from '../../ops/connector.js';
import type { BenchContext } from '../common.js';

const MODELS = [
  { name: 'InternVL3-1B', C: 1024, H: 896 },
  { name: 'InternVL3-8B', C: 1024, H: 3584 },
];

export async function run(ctx: BenchContext): Promise<void> {
  const e = ctx.engine;
  const onCpu = e.device.kind === 'cpu';
  const tiles = ctx.full ? 8 : 1;
  const dtypes: FloatDType[] = onCpu ? ['f32'] : ['f32', 'bf16'];
  const h = 32;
  const w = 32;
  for (const { name, C, H } of MODELS) {
    for (const dtype of dtypes) {
      const T = tiles * (h / 2) * (w / 2);
      const make = (shape: number[]) => e.randn(shape, { dtype });
      const x = make([tiles, h, w, C]);
      const p: ConnectorParams = {
        lnWeight: e.ones([4 * C], { dtype }), lnBias: e.zeros([4 * C], { dtype }),
        w1: make([H, 4 * C]), b1: make([H]), w2: make([H, H]), b2: make([H]),
      };
      const dY = make([tiles, T / tiles, H]);
      const shape = `${name} B=${tiles} h=w=${h} C=${C} H=${H} (T=${T})`;
      const flops = 2 * T * (4 * C * H + H * H);

      const forwardMs = await ctx.time(`connector ${shape}`, async () => {
        using y = ops.connector(x, p);
        await e.synchronize();
      });
      ctx.record({ op: 'connector', dtype, shape, ms: forwardMs, flops });

      const backwardMs = await ctx.time(`connectorBackward ${shape}`, async () => {
        const g = ops.connectorBackward(x, p, dY);
        await e.synchronize();
        for (const t of Object.values(g) as Tensor[]) t.dispose();
      });
      ctx.record({ op: 'connectorBackward', dtype, shape, ms: backwardMs, flops: 2 * flops, note: 'recomputes the forward' });

      for (const t of [x, dY, ...Object.values(p)] as Tensor[]) t.dispose();
    }
  }
}

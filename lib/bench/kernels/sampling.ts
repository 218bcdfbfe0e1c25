// sampleTokens benchmark: N ∈ {1, 16, 64} rows of V = 151674 logits, reported as GB/s of
// logits (read once) against the copy bandwidth, with rows/s in the note.
import { DTYPE_BYTES, type FloatDType } from '../../core/tensor.js';
import * as ops from '../../ops/index.js';
import type { BenchContext } from '../common.js';

const VOCAB = 151_674;

interface Setting {
  name: string;
  temperature: number;
  topK: number;
  topP: number;
}

const SETTINGS: Setting[] = [
  { name: 'T=1', temperature: 1, topK: 0, topP: 1 },
  { name: 'T=0.7 topK=50 topP=0.9', temperature: 0.7, topK: 50, topP: 0.9 },
  { name: 'T=1 topP=0.95', temperature: 1, topK: 0, topP: 0.95 },
  { name: 'greedy', temperature: 0, topK: 0, topP: 1 },
];

async function benchSampling(ctx: BenchContext, n: number, dtype: FloatDType, s: Setting): Promise<void> {
  const e = ctx.engine;
  // Normal logits of scale 3 (randn · 3), so that top-p keeps a few hundred tokens, not most.
  using raw = e.randn([n, VOCAB]);
  const values = (await raw.toArray()).map((x) => 3 * x);
  using logits = e.tensor(values, [n, VOCAB], { dtype });
  const seeds = Array.from({ length: n }, (_, i) => i + 1);
  let step = 0;
  const shape = `N=${n} V=${VOCAB} ${s.name}`;
  const ms = await ctx.time(`sampleTokens ${dtype} ${shape}`, async () => {
    const offsets = new Int32Array(n).fill(step++);
    const r = ops.sampleTokens(logits, { seeds, offsets, temperature: s.temperature, topK: s.topK, topP: s.topP });
    await e.synchronize();
    r.tokens.dispose();
    r.logprobs.dispose();
    r.entropy.dispose();
  });
  ctx.record({
    op: 'sampleTokens', dtype, shape, ms, bytes: n * VOCAB * DTYPE_BYTES[dtype],
    note: `${((n / ms) * 1000).toFixed(0)} rows/s; bytes: logits read once`,
  });
}

export async function run(ctx: BenchContext): Promise<void> {
  const dtypes: FloatDType[] = ctx.engine.device.kind === 'cpu' ? ['f32'] : ['bf16', 'f32'];
  for (const dtype of dtypes) {
    for (const n of [1, 16, 64]) {
      for (const s of SETTINGS) await benchSampling(ctx, n, dtype, s);
    }
  }
}

// Generation on the model: a KV cache, a packed prefill that fills it, batched decode steps
// that extend it, and the LM head's logits for sampling.
//
// The cache holds, per decoder layer, K and V tensors of [slots·maxLen, kvHeads, headDim]:
// slot s owns rows s·maxLen … s·maxLen + maxLen − 1, and used[s] of them hold keys so far. A
// prefill computes each prompt's keys and values once and copies them into every slot that
// continues that prompt (n samples of one prompt share a prefill, not cache rows). A decode step
// feeds one new token for each active slot (in slot order); attention reads each slot's used
// rows only (ops.attention's seqUsedK), so a finished slot costs nothing more.
import type { Engine } from '../core/engine.js';
import { R1VError } from '../core/errors.js';
import { Fence } from '../core/fence.js';
import { DTYPE_BYTES, type Tensor } from '../core/tensor.js';
import type { Batch } from '../data/batch.js';
import * as ops from '../ops/index.js';
import { planBatch } from './batch-plan.js';
import { disposeAll } from './blocks.js';
import { ForwardRun, type ModelParts } from './forward-run.js';
import type { FTensor } from './parameters.js';

export class KvCache implements Disposable {
  /** Per decoder layer: keys and values [slots·maxLen, kvHeads, headDim]. */
  readonly layers: ReadonlyArray<{ readonly k: FTensor; readonly v: FTensor }>;
  /** Keys held by each slot. */
  readonly used: Int32Array;
  /** Bytes held by the cache. */
  readonly bytes: number;

  /** @internal use VisionLanguageModel.createKvCache. */
  constructor(engine: Engine, dtype: 'f32' | 'bf16', layers: number, kvHeads: number, headDim: number, readonly slots: number, readonly maxLen: number) {
    const shape = [slots * maxLen, kvHeads, headDim];
    const made: Array<{ k: FTensor; v: FTensor }> = [];
    try {
      for (let l = 0; l < layers; l++) made.push({ k: engine.zeros(shape, { dtype }), v: engine.zeros(shape, { dtype }) });
    } catch (error) {
      disposeAll(made.flatMap((c) => [c.k, c.v]));
      throw error;
    }
    this.layers = made;
    this.used = new Int32Array(slots);
    this.bytes = 2 * layers * slots * maxLen * kvHeads * headDim * DTYPE_BYTES[dtype];
  }

  dispose(): void {
    disposeAll(this.layers.flatMap((c) => [c.k, c.v]));
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Which slot continues which sequence of a prefill batch. */
export interface PrefillCopy {
  sequence: number;
  slot: number;
}

/**
 * Runs the prompts of `batch` (packed; targets are ignored) through the model once, copies each
 * sequence's keys and values into the slots that continue it, and returns the hidden state of
 * the last prompt row for each copy, in order: [copies.length, H] (before the final norm).
 */
export async function prefill(m: ModelParts, imageContextTokenId: number | undefined, cache: KvCache, batch: Batch, copies: readonly PrefillCopy[], fn: string): Promise<FTensor> {
  const plan = planBatch(m.config, imageContextTokenId, batch, fn);
  const cu = batch.cuSeqlens, sequences = cu.length - 1;
  const src: number[] = [], dst: number[] = [], last: number[] = [];
  for (const [i, c] of copies.entries()) {
    if (!(Number.isInteger(c.sequence) && c.sequence >= 0 && c.sequence < sequences)) throw new R1VError('ARGUMENT', `${fn}: copies[${i}].sequence must be in [0, ${sequences})`);
    if (!(Number.isInteger(c.slot) && c.slot >= 0 && c.slot < cache.slots)) throw new R1VError('ARGUMENT', `${fn}: copies[${i}].slot must be in [0, ${cache.slots})`);
    const start = cu[c.sequence]!, length = cu[c.sequence + 1]! - start;
    if (length < 1 || length > cache.maxLen) throw new R1VError('SHAPE', `${fn}: sequence ${c.sequence} has ${length} tokens; a cache slot holds 1 to ${cache.maxLen}`);
    for (let r = 0; r < length; r++) {
      src.push(start + r);
      dst.push(c.slot * cache.maxLen + r);
    }
    last.push(start + length - 1);
  }
  const run = new ForwardRun(m, plan, batch, { temperature: 1, grad: false, tokenStats: false });
  const fence = new Fence(m.engine);
  const index = (values: number[]) => m.engine.tensor<'i32'>(Int32Array.from(values), [values.length]);
  const srcRows = index(src), dstRows = index(dst), lastRows = index(last);
  try {
    let x = await run.embed();
    const rows = run.tokenRows();
    for (const [l, layer] of m.languageLayers.entries()) {
      const r = layer.forwardKv(x, rows);
      x.dispose();
      x = r.y;
      for (const [kv, target] of [[r.k, cache.layers[l]!.k], [r.v, cache.layers[l]!.v]] as const) {
        const copied = ops.gatherRows(kv, srcRows);
        ops.writeRows(target, dstRows, copied);
        disposeAll([copied, kv]);
      }
      await fence.pass();
    }
    for (const c of copies) cache.used[c.slot] = cu[c.sequence + 1]! - cu[c.sequence]!;
    const hidden = ops.gatherRows(x, lastRows);
    x.dispose();
    return hidden;
  } finally {
    fence.close();
    run.dispose();
    disposeAll([srcRows, dstRows, lastRows]);
  }
}

/**
 * One decode step: tokens[i] is the next input of slot slots[i] (slots ascending, each with room
 * left); its key and value go to the slot's next row. Returns the new rows' hidden states [A, H]
 * (before the final norm); each slot's used count grows by one.
 */
export function decodeStep(m: ModelParts, cache: KvCache, slots: Int32Array, tokens: Int32Array, fn: string): FTensor {
  if (!(slots instanceof Int32Array) || !(tokens instanceof Int32Array) || slots.length !== tokens.length || slots.length === 0) {
    throw new R1VError('ARGUMENT', `${fn}: slots and tokens must be Int32Arrays of one (non-zero) length`);
  }
  const vocab = m.config.language.vocabSize;
  const active = new Uint8Array(cache.slots);
  slots.forEach((s, i) => {
    if (!(s >= 0 && s < cache.slots) || (i > 0 && s <= slots[i - 1]!)) throw new R1VError('ARGUMENT', `${fn}: slots must ascend within [0, ${cache.slots}), got slots[${i}] = ${s}`);
    if (cache.used[s]! >= cache.maxLen) throw new R1VError('SHAPE', `${fn}: slot ${s} is full (${cache.maxLen} rows)`);
    if (!(tokens[i]! >= 0 && tokens[i]! < vocab)) throw new R1VError('ARGUMENT', `${fn}: tokens[${i}] = ${tokens[i]} is outside [0, ${vocab})`);
    active[s] = 1;
  });
  const cuQ = new Int32Array(cache.slots + 1), cuK = new Int32Array(cache.slots + 1), seqUsedK = new Int32Array(cache.slots);
  for (let b = 0; b < cache.slots; b++) {
    cuQ[b + 1] = cuQ[b]! + active[b]!;
    cuK[b + 1] = (b + 1) * cache.maxLen;
    seqUsedK[b] = cache.used[b]! + active[b]!;
  }
  const e = m.engine;
  const owned: Tensor[] = [];
  const index = (values: Int32Array) => {
    const t = e.tensor<'i32'>(values, [values.length]);
    owned.push(t);
    return t;
  };
  const ids = index(tokens);
  const positions = index(Int32Array.from(slots, (s) => cache.used[s]!));
  const rows = index(Int32Array.from(slots, (s) => s * cache.maxLen + cache.used[s]!));
  let h = ops.embedding(ids, m.groups.language.embedTokens.value);
  for (const [l, layer] of m.languageLayers.entries()) {
    const y = layer.decode(h, positions, { ...cache.layers[l]!, rows, cuSeqlensQ: cuQ, cuSeqlensK: cuK, seqUsedK });
    h.dispose();
    h = y;
  }
  for (const s of slots) cache.used[s]! += 1;
  disposeAll(owned);
  return h;
}

/** The final norm and the LM head on hidden rows [A, H] (not consumed): logits [A, V] in the compute dtype. */
export function logits(m: ModelParts, hidden: FTensor): FTensor {
  const lm = m.groups.language;
  const normed = ops.rmsNorm(hidden, lm.norm.weight.value, { eps: lm.norm.eps });
  normed.rstd.dispose();
  const out = ops.matmul(normed.y, lm.head.value, { transB: true });
  normed.y.dispose();
  return out;
}

// attention: softmax(scale·q·kᵀ [+ causal mask])·v per head, flash-style, with GQA and packed
// (padding-free) batches; attentionBackward gives its gradients.
import { R1VError } from '../core/errors.js';
import { native, type NativeAttentionOptions } from '../core/native.js';
import type { Tensor, FloatDType } from '../core/tensor.js';
import { optionsArg, tensorArg, wrap } from './common.js';

export interface AttentionOptions {
  /**
   * Causal mask. With Sq < Sk it aligns to the end: query i of a sequence sees keys
   * j ≤ i + Sk − Sq (what KV-cache decode needs). A query that sees no key (Sq > Sk) gets
   * out = 0, lse = −∞ and zero gradients. Default false.
   */
  causal?: boolean;
  /** Multiplier of q·kᵀ before the softmax (finite). Default 1/√D. */
  scale?: number;
  /**
   * Packed (padding-free) layout: cumulative query offsets [B+1], starting at 0,
   * non-decreasing, ending at Tq; sequence b owns query rows [cu[b], cu[b+1]). Give
   * together with cuSeqlensK.
   */
  cuSeqlensQ?: Int32Array | readonly number[];
  /** Packed layout: cumulative key/value offsets [B+1], ending at Tk. Give with cuSeqlensQ. */
  cuSeqlensK?: Int32Array | readonly number[];
  /**
   * KV cache (packed layout, forward only; flash-attn's seqused_k): [B] integers, sequence b
   * uses only the first seqUsedK[b] key/value rows of its slot [cuSeqlensK[b], cuSeqlensK[b+1]),
   * 0 ≤ seqUsedK[b] ≤ slot size; the rest of the slot is never read. So a preallocated cache
   * [B·maxLen, Hkv, D] works with cuSeqlensK = [0, maxLen, 2·maxLen, ...]. Sk of sequence b is
   * then seqUsedK[b], also for the causal alignment (query i sees keys j ≤ i + seqUsedK[b] − Sq).
   * A sequence with seqUsedK[b] = 0 gets out = 0 and lse = −∞. attentionBackward rejects it
   * with R1VError('ARGUMENT').
   */
  seqUsedK?: Int32Array | readonly number[];
}

export interface AttentionResult<D extends FloatDType> {
  /** Attention output, shaped like q. */
  out: Tensor<D>;
  /**
   * f32 log-sum-exp of the scaled scores of each query over the keys it sees (−∞ when it
   * sees none): [B, Hq, Sq] dense, [Hq, Tq] packed. attentionBackward needs it.
   */
  lse: Tensor<'f32'>;
}

export interface AttentionGradients<D extends FloatDType> {
  dq: Tensor<D>;
  dk: Tensor<D>;
  dv: Tensor<D>;
}


function nativeOptions(options: AttentionOptions | undefined, fn: string): NativeAttentionOptions | undefined {
  const o = optionsArg(options, fn);
  if (o === undefined) return undefined;
  const offsets = (value: Int32Array | readonly number[] | undefined, name: string): Int32Array | undefined => {
    if (value === undefined || value instanceof Int32Array) return value;
    if (!Array.isArray(value)) throw new R1VError('ARGUMENT', `${fn}: ${name} must be an Int32Array or an array of integers`);
    value.forEach((x, i) => {
      if (!Number.isInteger(x) || x < -(2 ** 31) || x >= 2 ** 31) {
        throw new R1VError('ARGUMENT', `${fn}: ${name}[${i}] is not a 32-bit integer (${String(x)})`);
      }
    });
    return Int32Array.from(value);
  };
  // Unknown keys pass through: the binding names them.
  return {
    ...o as NativeAttentionOptions,
    ...(o.cuSeqlensQ !== undefined ? { cuSeqlensQ: offsets(o.cuSeqlensQ, 'cuSeqlensQ') } : {}),
    ...(o.cuSeqlensK !== undefined ? { cuSeqlensK: offsets(o.cuSeqlensK, 'cuSeqlensK') } : {}),
    ...(o.seqUsedK !== undefined ? { seqUsedK: offsets(o.seqUsedK, 'seqUsedK') } : {}),
  };
}

/**
 * Scaled dot-product attention per head, tiled (no Sq×Sk matrix in memory).
 * - dense: q [B, Sq, Hq, D], k/v [B, Sk, Hkv, D] → out [B, Sq, Hq, D], lse [B, Hq, Sq]
 * - packed (cuSeqlensQ/K given): q [Tq, Hq, D], k/v [Tk, Hkv, D] → out [Tq, Hq, D], lse [Hq, Tq]
 *
 * GQA: Hq is a multiple of Hkv; query head h reads kv head ⌊h / (Hq/Hkv)⌋. D is a multiple of
 * 8 up to 256 (64 and 128 are the tuned sizes). CPU: f32. CUDA: f32, bf16, f16 (f32 accumulation).
 */
export function attention<D extends FloatDType>(
  q: Tensor<D>, k: Tensor<D>, v: Tensor<D>, options?: AttentionOptions,
): AttentionResult<D> {
  const tq = tensorArg<Tensor<D>>(q, 'attention: q');
  const tk = tensorArg<Tensor<D>>(k, 'attention: k');
  const tv = tensorArg<Tensor<D>>(v, 'attention: v');
  const r = native().attention(tq.handle, tk.handle, tv.handle, nativeOptions(options, 'attention'));
  return { out: wrap<Tensor<D>>(tq, r.out), lse: wrap<Tensor<'f32'>>(tq, r.lse) };
}

/**
 * Gradients of attention with respect to q, k and v, given the forward's out and lse and the
 * gradient dOut of the loss with respect to out (shaped like q). Options must be the forward's.
 * dk/dv sum over the query heads that share a kv head (GQA).
 */
export function attentionBackward<D extends FloatDType>(
  q: Tensor<D>, k: Tensor<D>, v: Tensor<D>, out: Tensor<D>, lse: Tensor<'f32'>, dOut: Tensor<D>,
  options?: AttentionOptions,
): AttentionGradients<D> {
  const fn = 'attentionBackward';
  const tq = tensorArg<Tensor<D>>(q, `${fn}: q`);
  const tk = tensorArg<Tensor<D>>(k, `${fn}: k`);
  const tv = tensorArg<Tensor<D>>(v, `${fn}: v`);
  const tout = tensorArg<Tensor<D>>(out, `${fn}: out`);
  const tlse = tensorArg<Tensor<'f32'>>(lse, `${fn}: lse`);
  const tdout = tensorArg<Tensor<D>>(dOut, `${fn}: dOut`);
  const r = native().attentionBackward(
    tq.handle, tk.handle, tv.handle, tout.handle, tlse.handle, tdout.handle, nativeOptions(options, fn),
  );
  return { dq: wrap<Tensor<D>>(tq, r.dq), dk: wrap<Tensor<D>>(tq, r.dk), dv: wrap<Tensor<D>>(tq, r.dv) };
}

// The row and layout glue of the model: views (reshape), broadcast arithmetic (add, scale,
// scaleChannels, sumRows), row gathers and scatters by i32 index (gatherRows, scatterAddRows,
// scatterRows, writeRows — the one in-place op here) and dtype conversion (cast, copy).
// CPU: f32 math (cast, copy, reshape and the row copies also take bf16/f16 CPU tensors);
// CUDA: f32, bf16, f16 with f32 math.
import { native } from '../core/native.js';
import type { DType, FloatDType, Tensor } from '../core/tensor.js';
import { tensorArg, wrap } from './common.js';

/** Gradients of scaleChannels, in the dtype of x. */
export interface ScaleChannelsGradients<D extends FloatDType> {
  /** dY ∘ s, like x. */
  dx: Tensor<D>;
  /** Σ over the rows of dY ∘ x, [C]. */
  dScale: Tensor<D>;
}

/**
 * A view of x with another shape of the same element count: no copy and no queued work; the
 * view shares x's memory, so in-place writes (writeRows, adamwStep) through either are seen by
 * both, and an error carried by x (from the op that made it) is carried by the view. At most
 * one entry may be -1; it is inferred. Disposing the view or x leaves the other usable (the
 * memory is freed once neither holds it); each handle reports the bytes to the JavaScript GC as
 * its own, so views make the GC count shared memory more than once (they collect sooner, never
 * later).
 */
export function reshape<D extends DType>(x: Tensor<D>, shape: number[]): Tensor<D> {
  const tx = tensorArg<Tensor<D>>(x, 'reshape: x');
  return wrap(tx, native().reshape(tx.handle, shape));
}

/**
 * a + b, elementwise. b has a's shape, or the shape of a trailing part of it and is repeated
 * over a's leading dims (a [T, C] + b [C], a [tiles, P, C] + b [P, C]). Same dtype and engine.
 * Returns a tensor like a.
 */
export function add<D extends FloatDType>(a: Tensor<D>, b: Tensor<D>): Tensor<D> {
  const ta = tensorArg<Tensor<D>>(a, 'add: a');
  const tb = tensorArg<Tensor<D>>(b, 'add: b');
  return wrap(ta, native().add(ta.handle, tb.handle));
}

/** alpha·x (alpha a finite number, applied in f32). Returns a tensor like x. */
export function scale<D extends FloatDType>(x: Tensor<D>, alpha: number): Tensor<D> {
  const tx = tensorArg<Tensor<D>>(x, 'scale: x');
  return wrap(tx, native().scale(tx.handle, alpha));
}

/**
 * x ∘ s with s [C] = x's last dim, repeated over the rows (InternViT layer scale). Returns a
 * tensor like x.
 */
export function scaleChannels<D extends FloatDType>(x: Tensor<D>, s: Tensor<D>): Tensor<D> {
  const tx = tensorArg<Tensor<D>>(x, 'scaleChannels: x');
  const ts = tensorArg<Tensor<D>>(s, 'scaleChannels: s');
  return wrap(tx, native().scaleChannels(tx.handle, ts.handle));
}

/**
 * Backward of scaleChannels for dY like x: dx = dY ∘ s and dScale[c] = Σ_rows dY·x. The column
 * sum is deterministic: on the CPU in f64 with the rows in order; on CUDA in f32 per chunk of
 * rows, the chunks then added in order (no atomics).
 */
export function scaleChannelsBackward<D extends FloatDType>(x: Tensor<D>, s: Tensor<D>, dY: Tensor<D>): ScaleChannelsGradients<D> {
  const tx = tensorArg<Tensor<D>>(x, 'scaleChannelsBackward: x');
  const ts = tensorArg<Tensor<D>>(s, 'scaleChannelsBackward: s');
  const td = tensorArg<Tensor<D>>(dY, 'scaleChannelsBackward: dY');
  const g = native().scaleChannelsBackward(tx.handle, ts.handle, td.handle);
  return { dx: wrap(tx, g.dx), dScale: wrap(tx, g.dScale) };
}

/**
 * x [..., C] → [C]: the sum over the rows (the leading dims flattened; zero rows give zeros),
 * e.g. a bias gradient. Deterministic whatever the thread count: the CPU adds the rows in order
 * in f64; CUDA adds f32 partial sums of row chunks in order.
 */
export function sumRows<D extends FloatDType>(x: Tensor<D>): Tensor<D> {
  const tx = tensorArg<Tensor<D>>(x, 'sumRows: x');
  return wrap(tx, native().sumRows(tx.handle));
}

/**
 * x [N, ...rest], idx i32 [M] → [M, ...rest] with out[m] = x[idx[m]] (any rank ≥ 1; a copy of
 * rows, f32/bf16/f16 on either device). An index outside [0, N) is found when the work runs:
 * reading the result then rejects with R1VError('ARGUMENT') naming it, "idx[m] = v" (on CUDA its
 * row is NaN and the next readback reports a bad index without its position).
 */
export function gatherRows<D extends FloatDType>(x: Tensor<D>, idx: Tensor<'i32'>): Tensor<D> {
  const tx = tensorArg<Tensor<D>>(x, 'gatherRows: x');
  const ti = tensorArg<Tensor<'i32'>>(idx, 'gatherRows: idx');
  return wrap(tx, native().gatherRows(tx.handle, ti.handle));
}

/**
 * The backward of gatherRows: src [M, ...rest], idx i32 [M] → out [rows, ...rest] with out = 0,
 * then out[idx[m]] += src[m] (repeats add up). Bad indices are reported like gatherRows (on CUDA
 * the bad row adds nothing). The CPU adds in m order (deterministic); CUDA adds with f32 atomics,
 * so its sums may differ in the last bits between runs.
 */
export function scatterAddRows<D extends FloatDType>(src: Tensor<D>, idx: Tensor<'i32'>, rows: number): Tensor<D> {
  const ts = tensorArg<Tensor<D>>(src, 'scatterAddRows: src');
  const ti = tensorArg<Tensor<'i32'>>(idx, 'scatterAddRows: idx');
  return wrap(ts, native().scatterAddRows(ts.handle, ti.handle, rows));
}

/**
 * A new tensor equal to base [N, ...rest] except out[idx[m]] = src[m], src [M, ...rest] (e.g. image
 * embeddings over the image-token rows). An index outside [0, N) or an index given twice (the
 * result would depend on order) is found when the work runs: reading the result rejects with
 * R1VError('ARGUMENT') naming it (on CUDA the next readback reports it; repeated rows are NaN).
 */
export function scatterRows<D extends FloatDType>(base: Tensor<D>, idx: Tensor<'i32'>, src: Tensor<D>): Tensor<D> {
  const tb = tensorArg<Tensor<D>>(base, 'scatterRows: base');
  const ti = tensorArg<Tensor<'i32'>>(idx, 'scatterRows: idx');
  const ts = tensorArg<Tensor<D>>(src, 'scatterRows: src');
  return wrap(tb, native().scatterRows(tb.handle, ti.handle, ts.handle));
}

/**
 * dst[idx[m]] = src[m], IN PLACE (e.g. appending to a KV cache): dst [N, ...rest] is overwritten in
 * stream order — ops queued before see the old rows, ops queued after (and reads) the new ones,
 * through dst and every reshape view of it. src [M, ...rest] of dst's dtype. Shapes, dtypes and
 * engines are checked before anything is queued. An index outside [0, N) or given twice is found
 * when the work runs: on the CPU nothing is written and dst then carries the error (reading it,
 * or ops using it, reject with R1VError('ARGUMENT') naming idx[m] = v); on CUDA the next readback
 * raises it (out-of-range rows are skipped, repeated rows are NaN). If an input carries the error
 * of the op that made it, nothing is written and dst carries that error.
 */
export function writeRows<D extends FloatDType>(dst: Tensor<D>, idx: Tensor<'i32'>, src: Tensor<D>): void {
  const td = tensorArg<Tensor<D>>(dst, 'writeRows: dst');
  const ti = tensorArg<Tensor<'i32'>>(idx, 'writeRows: idx');
  const ts = tensorArg<Tensor<D>>(src, 'writeRows: src');
  native().writeRows(td.handle, ti.handle, ts.handle);
}

/**
 * x converted to a float dtype, rounding to nearest even (NaN and ±Inf kept); x may be any float
 * dtype on either device. The same dtype gives a copy.
 */
export function cast<D2 extends FloatDType>(x: Tensor<FloatDType>, dtype: D2): Tensor<D2> {
  const tx = tensorArg<Tensor<FloatDType>>(x, 'cast: x');
  return wrap(tx, native().cast(tx.handle, dtype));
}

/** A fresh copy of x (any dtype, i32 included) with memory of its own. */
export function copy<D extends DType>(x: Tensor<D>): Tensor<D> {
  const tx = tensorArg<Tensor<D>>(x, 'copy: x');
  return wrap(tx, native().copy(tx.handle));
}

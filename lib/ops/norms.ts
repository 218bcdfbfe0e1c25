// rmsNorm / layerNorm over the last dimension, and their backward passes.
import { native } from '../core/native.js';
import type { FloatDType, Tensor } from '../core/tensor.js';
import { optionsArg, tensorArg, wrap } from './common.js';

export interface RmsNormOptions {
  /** Added to mean(x²) before the square root; positive and finite as f32. Default 1e-6 (Qwen2). */
  eps?: number;
}

export interface LayerNormOptions {
  /** Added to the (biased) variance before the square root; positive and finite as f32.
   * Default 1e-5 (torch); InternVL's ViT uses 1e-6. */
  eps?: number;
}

/**
 * Qwen2's RMSNorm over the last dimension of x [N, D] or [B, S, D]:
 * y = x · rstd · weight with rstd = 1/sqrt(mean(x²) + eps), statistics in f32.
 * Returns y (like x) and rstd (f32, x's shape without its last dimension) for rmsNormBackward.
 * CPU: f32. CUDA: f32, bf16, f16.
 */
export function rmsNorm<D extends FloatDType>(
  x: Tensor<D>, weight: Tensor<D>, options?: RmsNormOptions,
): { y: Tensor<D>; rstd: Tensor<'f32'> } {
  const tx = tensorArg<Tensor<D>>(x, 'rmsNorm: x');
  const tw = tensorArg<Tensor<D>>(weight, 'rmsNorm: weight');
  const o = optionsArg(options, 'rmsNorm');
  const r = native().rmsNorm(tx.handle, tw.handle, o);
  return { y: wrap(tx, r.y), rstd: wrap(tx, r.rstd) };
}

/**
 * Gradients of rmsNorm for the output gradient dY (like x), from the forward's rstd:
 * with x̂ = x·rstd and g = dY·weight, dx = rstd·(g − x̂·mean(g·x̂)) and dWeight = Σ_rows dY·x̂.
 * dWeight is summed in a fixed order (bitwise reproducible). Fresh tensors, not accumulated.
 */
export function rmsNormBackward<D extends FloatDType>(
  x: Tensor<D>, weight: Tensor<D>, rstd: Tensor<'f32'>, dY: Tensor<D>,
): { dx: Tensor<D>; dWeight: Tensor<D> } {
  const fn = 'rmsNormBackward';
  const tx = tensorArg<Tensor<D>>(x, `${fn}: x`);
  const tw = tensorArg<Tensor<D>>(weight, `${fn}: weight`);
  const tr = tensorArg<Tensor>(rstd, `${fn}: rstd`);
  const tdy = tensorArg<Tensor<D>>(dY, `${fn}: dY`);
  const r = native().rmsNormBackward(tx.handle, tw.handle, tr.handle, tdy.handle);
  return { dx: wrap(tx, r.dx), dWeight: wrap(tx, r.dWeight) };
}

/**
 * torch's LayerNorm over the last dimension of x [N, D] or [B, S, D]:
 * y = (x − mean) · rstd · weight + bias with rstd = 1/sqrt(var + eps) (biased variance),
 * statistics in f32. Returns y (like x), mean and rstd (f32, x's shape without its last
 * dimension) for layerNormBackward. CPU: f32. CUDA: f32, bf16, f16.
 */
export function layerNorm<D extends FloatDType>(
  x: Tensor<D>, weight: Tensor<D>, bias: Tensor<D>, options?: LayerNormOptions,
): { y: Tensor<D>; mean: Tensor<'f32'>; rstd: Tensor<'f32'> } {
  const tx = tensorArg<Tensor<D>>(x, 'layerNorm: x');
  const tw = tensorArg<Tensor<D>>(weight, 'layerNorm: weight');
  const tb = tensorArg<Tensor<D>>(bias, 'layerNorm: bias');
  const o = optionsArg(options, 'layerNorm');
  const r = native().layerNorm(tx.handle, tw.handle, tb.handle, o);
  return { y: wrap(tx, r.y), mean: wrap(tx, r.mean), rstd: wrap(tx, r.rstd) };
}

/**
 * Gradients of layerNorm for the output gradient dY (like x), from the forward's mean and rstd:
 * with x̂ = (x − mean)·rstd and g = dY·weight, dx = rstd·(g − mean(g) − x̂·mean(g·x̂)),
 * dWeight = Σ_rows dY·x̂, dBias = Σ_rows dY (fixed summation order: bitwise reproducible).
 * Fresh tensors, not accumulated.
 */
export function layerNormBackward<D extends FloatDType>(
  x: Tensor<D>, weight: Tensor<D>, mean: Tensor<'f32'>, rstd: Tensor<'f32'>, dY: Tensor<D>,
): { dx: Tensor<D>; dWeight: Tensor<D>; dBias: Tensor<D> } {
  const fn = 'layerNormBackward';
  const tx = tensorArg<Tensor<D>>(x, `${fn}: x`);
  const tw = tensorArg<Tensor<D>>(weight, `${fn}: weight`);
  const tm = tensorArg<Tensor>(mean, `${fn}: mean`);
  const tr = tensorArg<Tensor>(rstd, `${fn}: rstd`);
  const tdy = tensorArg<Tensor<D>>(dY, `${fn}: dY`);
  const r = native().layerNormBackward(tx.handle, tw.handle, tm.handle, tr.handle, tdy.handle);
  return { dx: wrap(tx, r.dx), dWeight: wrap(tx, r.dWeight), dBias: wrap(tx, r.dBias) };
}

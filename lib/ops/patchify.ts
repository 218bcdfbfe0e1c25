// patchify / unpatchify: the data movement that makes a ViT patch embedding a GEMM.
import { native } from '../core/native.js';
import type { FloatDType, Tensor } from '../core/tensor.js';
import { optionsArg, tensorArg, wrap } from './common.js';

export interface PatchifyOptions {
  /** Side p of the square patches (the Conv2d kernel size and stride); an integer ≥ 1 that divides H and W. */
  patch: number;
}

export interface UnpatchifyOptions extends PatchifyOptions {
  /** C, the channels of the pixels to rebuild; an integer ≥ 1. */
  channels: number;
  /** H, the pixel height; a multiple of patch. */
  height: number;
  /** W, the pixel width; a multiple of patch. */
  width: number;
}

/**
 * Cuts pixels [N, C, H, W] into non-overlapping p×p patches: returns patches [N, (H/p)·(W/p), C·p·p] with
 * `patches[n, i·(W/p) + j, c·p·p + u·p + v] = pixels[n, c, i·p + u, j·p + v]` (patches in row-major order
 * over the grid, each flattened channel-major).
 *
 * That order is a PyTorch Conv2d weight [out, C, p, p] flattened to [out, C·p·p], so with `w` that flattened
 * weight, `matmul(patchify(x, { patch: p }), w, { transB: true, bias })` equals
 * `Conv2d(C, out, p, stride=p)(x)` with its output [N, out, H/p, W/p] laid out as [N, (H/p)·(W/p), out]:
 * the ViT patch embedding as a GEMM. An exact copy; CPU: f32. CUDA: f32, bf16, f16.
 */
export function patchify<D extends FloatDType>(pixels: Tensor<D>, options: PatchifyOptions): Tensor<D> {
  const t = tensorArg<Tensor<D>>(pixels, 'patchify: pixels');
  const o = optionsArg(options, 'patchify');
  return wrap(t, native().patchify(t.handle, o as PatchifyOptions));
}

/**
 * The exact inverse of patchify: patches [N, (H/p)·(W/p), C·p·p] → pixels [N, C, H, W]. Since patchify is a
 * permutation, this is also its backward (dPixels = unpatchify(dPatches)). CPU: f32. CUDA: f32, bf16, f16.
 */
export function unpatchify<D extends FloatDType>(patches: Tensor<D>, options: UnpatchifyOptions): Tensor<D> {
  const t = tensorArg<Tensor<D>>(patches, 'unpatchify: patches');
  const o = optionsArg(options, 'unpatchify');
  return wrap(t, native().unpatchify(t.handle, o as UnpatchifyOptions));
}

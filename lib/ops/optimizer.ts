// Optimizer kernels: the squared global gradient norm and the AdamW update of many parameter
// groups in one step (in place).
import { R1VError } from '../core/errors.js';
import { native, type NativeAdamWGroup } from '../core/native.js';
import { Tensor, type FloatDType } from '../core/tensor.js';
import { optionsArg, tensorArg, wrap } from './common.js';

/** One parameter tensor and its AdamW state. adamwStep updates param, m, v and master in place. */
export interface AdamWGroup {
  /** The weights: CPU f32; CUDA f32, bf16 or f16. With a master, it is set to round(master). */
  param: Tensor<FloatDType>;
  /** dL/dparam, same dtype and shape as param. Read only. */
  grad: Tensor<FloatDType>;
  /** First moment, f32, shape of param (zeros before the first step). */
  m: Tensor<'f32'>;
  /** Second moment, f32, shape of param (zeros before the first step). */
  v: Tensor<'f32'>;
  /** f32 master weights (for 16-bit params): the update is applied to them in f32. */
  master?: Tensor<'f32'>;
  /** Overrides the step's weightDecay for this group (0 for norms and biases). Finite, ≥ 0. */
  weightDecay?: number;
}

export interface AdamWStepOptions {
  /** Learning rate, finite and ≥ 0. */
  lr: number;
  /** The step being taken, an integer ≥ 1 (1 for the first): it sets the bias corrections. */
  step: number;
  /** First-moment decay β1 in [0, 1); default 0.9. */
  beta1?: number;
  /** Second-moment decay β2 in [0, 1); default 0.999. */
  beta2?: number;
  /** Added to √v̂ in the denominator, finite and > 0; default 1e-8. */
  eps?: number;
  /** Decoupled weight decay (p ← p − lr·wd·p) for groups without their own; finite, ≥ 0; default 0.01. */
  weightDecay?: number;
  /**
   * Multiplies every gradient before the update (default 1): a finite number ≥ 0, or an f32 [1]
   * tensor on the same engine — e.g. the clip factor min(1, maxNorm / norm) computed on the device
   * from sumOfSquares, which then needs no round trip to the host. A non-finite value in the
   * tensor (an inf/NaN gradient norm) makes the updated weights NaN.
   */
  gradScale?: number | Tensor<'f32'>;
}


/**
 * Σ over every element of every tensor of x², as f32 [1]: the squared global gradient norm
 * (norm = √ of it). Any float dtype the device computes in (CPU f32; CUDA f32, bf16, f16), all
 * on one engine, at least one tensor. Accumulated in f64 (in f32 within each CUDA block), in a fixed
 * order: the same inputs give the same bits whatever the thread count.
 */
export function sumOfSquares(tensors: readonly Tensor<FloatDType>[]): Tensor<'f32'> {
  if (!Array.isArray(tensors)) throw new R1VError('ARGUMENT', 'sumOfSquares: tensors must be an array of tensors');
  const list = tensors.map((t, i) => tensorArg<Tensor<FloatDType>>(t, `sumOfSquares: tensors[${i}]`));
  if (list.length === 0) throw new R1VError('ARGUMENT', 'sumOfSquares: tensors must hold at least one tensor');
  return wrap(list[0]!, native().sumOfSquares(list.map((t) => t.handle)));
}

/**
 * One AdamW step (torch.optim.AdamW: decoupled weight decay) over all groups, IN PLACE: param,
 * m, v (and master) of every group are overwritten, in stream order — ops queued before see the
 * old values, ops queued after (and reads) see the new ones. With g = grad·gradScale and p the
 * f32 weights (master if given, else param):
 *   p ← p − lr·wd·p;  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;
 *   p ← p − lr·(m / (1−β1^step)) / (√(v / (1−β2^step)) + eps);  with a master, param ← round(p).
 * On CUDA all groups are updated by one kernel launch. Every argument is checked before anything
 * is queued (R1VError naming it, e.g. 'adamwStep: groups[3].m must be f32'); a tensor may appear
 * only once among the written ones. If an input carries the error of the op that made it (say a
 * failed backward), nothing is updated and the written tensors carry that error.
 */
export function adamwStep(groups: readonly AdamWGroup[], options: AdamWStepOptions): void {
  const fn = 'adamwStep';
  if (!Array.isArray(groups)) throw new R1VError('ARGUMENT', `${fn}: groups must be an array`);
  const o = optionsArg(options, fn);
  if (o === undefined) throw new R1VError('ARGUMENT', `${fn}: options { lr, step, ... } are required`);
  const nativeGroups: NativeAdamWGroup[] = groups.map((g, i) => {
    const at = `${fn}: groups[${i}]`;
    if (g === null || typeof g !== 'object') throw new R1VError('ARGUMENT', `${at} must be an object { param, grad, m, v, master? }`);
    // Unknown keys pass through: the binding names them.
    return {
      ...g as object,
      param: tensorArg(g.param, `${at}.param`).handle,
      grad: tensorArg(g.grad, `${at}.grad`).handle,
      m: tensorArg(g.m, `${at}.m`).handle,
      v: tensorArg(g.v, `${at}.v`).handle,
      ...(g.master === undefined ? {} : { master: tensorArg(g.master, `${at}.master`).handle }),
      ...(g.weightDecay === undefined ? {} : { weightDecay: g.weightDecay }),
    };
  });
  const scale = o.gradScale instanceof Tensor ? o.gradScale.handle : o.gradScale;
  native().adamwStep(nativeGroups, { ...o, gradScale: scale });
}

// The small pieces every layer is made of, as forward/backward pairs over the engine's ops:
// Linear (PyTorch layout W [out, in], y = x·Wᵀ + b) and the norms. Activations are 2-D
// [rows, features] (packed, padding-free batches). Gradients of trainable parameters are added
// into Parameter.grad (summed until zeroGrad); frozen parameters get no gradient work.
// Ownership: a function disposes what it created and did not return, never its inputs, except
// where its name says it consumes them (addConsuming, accumulateGrad).
import type { Tensor } from '../core/tensor.js';
import * as ops from '../ops/index.js';
import type { FTensor, LinearGroup, NormGroup, Parameter } from './parameters.js';

/** Adds g into p.grad (taking ownership of g), reshaped to p's shape; drops it for frozen p. */
export function accumulateGrad(p: Parameter, g: FTensor): void {
  if (!p.trainable) {
    g.dispose();
    return;
  }
  const same = g.shape.length === p.shape.length && g.shape.every((d, i) => d === p.shape[i]);
  const shaped = same ? g : ops.reshape(g, [...p.shape]);
  if (shaped !== g) g.dispose();
  if (!p.grad) {
    p.grad = shaped;
    return;
  }
  p.grad = addConsuming(p.grad, shaped);
}

/** a + b, disposing both (the usual residual or gradient sum). */
export function addConsuming(a: FTensor, b: FTensor): FTensor {
  const sum = ops.add(a, b);
  a.dispose();
  b.dispose();
  return sum;
}

/** Disposes every tensor given (undefined entries are skipped). */
export function disposeAll(tensors: Iterable<Tensor | undefined>): void {
  for (const t of tensors) t?.dispose();
}

/** x·Wᵀ + b for x [rows, in]. `weight` overrides the parameter's tensor (a 2-D view of a conv weight). */
export function linear(x: FTensor, l: LinearGroup, weight: FTensor = l.weight.value): FTensor {
  return ops.matmul(x, weight, { transB: true, ...(l.bias ? { bias: l.bias.value } : {}) });
}

/** Adds dW = dYᵀ·x and db = Σ dY for trainable weights; returns dX = dY·W when asked. */
export function linearBackward(x: FTensor, l: LinearGroup, dY: FTensor, needDx: boolean, weight: FTensor = l.weight.value): FTensor | undefined {
  if (l.weight.trainable) accumulateGrad(l.weight, ops.matmul(dY, x, { transA: true }));
  if (l.bias?.trainable) accumulateGrad(l.bias, ops.sumRows(dY));
  return needDx ? ops.matmul(dY, weight) : undefined;
}

/** A norm's output and the statistics its backward needs. */
export interface NormResult {
  y: FTensor;
  mean?: Tensor<'f32'> | undefined;
  rstd: Tensor<'f32'>;
}

/** LayerNorm when the group has a bias, else RMSNorm. */
export function norm(x: FTensor, n: NormGroup): NormResult {
  if (n.bias) return ops.layerNorm(x, n.weight.value, n.bias.value, { eps: n.eps });
  return ops.rmsNorm(x, n.weight.value, { eps: n.eps });
}

/** dX of the norm when asked; adds its weight (and bias) gradients. */
export function normBackward(x: FTensor, n: NormGroup, r: NormResult, dY: FTensor, needDx: boolean): FTensor | undefined {
  let dx: FTensor;
  if (n.bias) {
    const g = ops.layerNormBackward(x, n.weight.value, r.mean!, r.rstd, dY);
    dx = g.dx;
    accumulateGrad(n.weight, g.dWeight);
    accumulateGrad(n.bias, g.dBias);
  } else {
    const g = ops.rmsNormBackward(x, n.weight.value, r.rstd, dY);
    dx = g.dx;
    accumulateGrad(n.weight, g.dWeight);
  }
  if (needDx) return dx;
  dx.dispose();
  return undefined;
}

export function disposeNorm(r: NormResult | undefined): void {
  disposeAll([r?.y, r?.mean, r?.rstd]);
}

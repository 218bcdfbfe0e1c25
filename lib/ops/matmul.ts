// matmul: op(a)·op(b) with an optional bias + activation epilogue.
import { native } from '../core/native.js';
import { Tensor, type FloatDType } from '../core/tensor.js';
import { optionsArg, optionalTensorArg, tensorArg } from './common.js';

/** Elementwise activation applied after the bias. */
export type MatmulActivation = 'none' | 'gelu' | 'silu';

export interface MatmulOptions<D extends FloatDType = FloatDType> {
  /** Use aᵀ (the last two dims of a swapped). Default false. */
  transA?: boolean;
  /** Use bᵀ (the last two dims of b swapped). Default false; true for PyTorch-layout weights [out, in]. */
  transB?: boolean;
  /** [N] vector added to every row of the product (N = the output's last dim); same dtype and engine as a. */
  bias?: Tensor<D>;
  /**
   * Applied to op(a)·op(b) + bias, elementwise: 'gelu' is the exact form z·Φ(z) = ½z(1 + erf(z/√2)),
   * 'silu' is z·sigmoid(z). Default 'none'.
   */
  activation?: MatmulActivation;
}


/**
 * act(op(a) · op(b) + bias). 2-D [M,K]·[K,N] → [M,N]; batched 3-D [B,M,K]·[B,K,N] → [B,M,N],
 * where a batch of 1 or a 2-D operand is broadcast. A Linear layer with PyTorch weights
 * w [out, in] is `matmul(x, w, { transB: true, bias })`. CPU: f32. CUDA: f32, bf16, f16
 * (f32 accumulation; cuBLASLt when the machine has it, else the engine's own kernels).
 */
export function matmul<D extends FloatDType>(a: Tensor<D>, b: Tensor<D>, options?: MatmulOptions<D>): Tensor<D> {
  const ta = tensorArg<Tensor<D>>(a, 'matmul: a');
  const tb = tensorArg<Tensor<D>>(b, 'matmul: b');
  const o = optionsArg(options, 'matmul');
  const bias = optionalTensorArg<Tensor<D>>(o?.bias, 'matmul: bias');
  // Unknown keys pass through: the binding names them.
  const nativeOptions = o && { ...o, bias: bias?.handle };
  if (nativeOptions && !bias) delete nativeOptions.bias;
  return new Tensor<D>(ta.engine, native().matmul(ta.handle, tb.handle, nativeOptions));
}

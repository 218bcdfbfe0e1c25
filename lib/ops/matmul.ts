// matmul: op(a)·op(b) with an optional bias + activation epilogue.
import { native } from '../native.js';
import { Tensor, type FloatDType } from '../tensor.js';
import { tensorArg } from './common.js';

export interface MatmulOptions {
  /** Use aᵀ (the last two dims of a swapped). */
  transA?: boolean;
  /** Use bᵀ (the last two dims of b swapped). */
  transB?: boolean;
}

/**
 * op(a) · op(b). 2-D [M,K]·[K,N] → [M,N]; batched 3-D [B,M,K]·[B,K,N] → [B,M,N], where a
 * batch of 1 or a 2-D operand is broadcast. CPU: f32. CUDA: f32, bf16, f16 (f32 accumulation).
 */
export function matmul<D extends FloatDType>(a: Tensor<D>, b: Tensor<D>, options?: MatmulOptions): Tensor<D> {
  const ta = tensorArg<Tensor<D>>(a, 'matmul: a');
  const tb = tensorArg<Tensor<D>>(b, 'matmul: b');
  return new Tensor<D>(ta.engine, native().matmul(ta.handle, tb.handle, options));
}

// Tensor operations. Each checks its arguments, queues the work on the operands' engine
// stream and returns the result tensor at once; the math runs off the JavaScript thread.
import { R1VError } from './errors.js';
import { native } from './native.js';
import { Tensor, type FloatDType } from './tensor.js';

export interface MatmulOptions {
  /** Use aᵀ (the last two dims of a swapped). */
  transA?: boolean;
  /** Use bᵀ (the last two dims of b swapped). */
  transB?: boolean;
}

function tensorArg<T extends Tensor>(value: unknown, name: string): T {
  if (!(value instanceof Tensor)) throw new R1VError('ARGUMENT', `${name} must be a Tensor`);
  return value as T;
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

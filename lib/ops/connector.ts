// connector: InternVL's mlp1 projector (pixel shuffle → LayerNorm → Linear → GELU → Linear).
import { R1VError } from '../core/errors.js';
import { native, type NativeConnectorParams } from '../core/native.js';
import type { FloatDType, Tensor } from '../core/tensor.js';
import * as is from '../core/validate.js';
import { optionsArg, tensorArg, wrap } from './common.js';

/**
 * The projector's weights, all of the dtype of x. Linear weights use PyTorch's layout
 * [out, in] (y = x·Wᵀ + b). C is the ViT width, H the language model's hidden size.
 */
export interface ConnectorParams<D extends FloatDType = FloatDType> {
  /** LayerNorm scale [4C]. */
  lnWeight: Tensor<D>;
  /** LayerNorm shift [4C]. */
  lnBias: Tensor<D>;
  /** First Linear's weight [H, 4C]. */
  w1: Tensor<D>;
  /** First Linear's bias [H]. */
  b1: Tensor<D>;
  /** Second Linear's weight [H, H]. */
  w2: Tensor<D>;
  /** Second Linear's bias [H]. */
  b2: Tensor<D>;
}

export interface ConnectorOptions {
  /** LayerNorm epsilon, positive and finite; default 1e-5 (InternVL's mlp1). */
  eps?: number;
}

/** Gradients of connectorBackward, each shaped like its input (fresh tensors). */
export interface ConnectorGradients<D extends FloatDType = FloatDType> {
  dx: Tensor<D>;
  dLnWeight: Tensor<D>;
  dLnBias: Tensor<D>;
  dW1: Tensor<D>;
  dB1: Tensor<D>;
  dW2: Tensor<D>;
  dB2: Tensor<D>;
}

const PARAM_KEYS = ['lnWeight', 'lnBias', 'w1', 'b1', 'w2', 'b2'] as const;

function paramsArg(p: unknown, fn: string): NativeConnectorParams {
  if (p === null || typeof p !== 'object' || Array.isArray(p)) throw new R1VError('ARGUMENT', `${fn}: p must be an object`);
  const fields = is.options(p, PARAM_KEYS, `${fn}: p`, 'field');
  const handle = (key: (typeof PARAM_KEYS)[number]) => tensorArg<Tensor>(fields[key], `${fn}: p.${key}`).handle;
  return {
    lnWeight: handle('lnWeight'), lnBias: handle('lnBias'), w1: handle('w1'),
    b1: handle('b1'), w2: handle('w2'), b2: handle('b2'),
  };
}

/**
 * InternVL's mlp1 projector. x [B, h, w, C] (h, w even) is pixel-shuffled (downsample 0.5,
 * ps_version v2) into s[b, i, j, k·C + c] = x[b, 2i + ⌊k/2⌋, 2j + k mod 2, c] (k ∈ 0..3,
 * rows (i, j) row-major), then y = Linear₂(GELU(Linear₁(LayerNorm(s)))) with the erf GELU.
 * Returns y [B, (h/2)·(w/2), H]. CPU: f32. CUDA: f32, bf16, f16 (f32 accumulation and
 * LayerNorm statistics).
 */
export function connector<D extends FloatDType>(x: Tensor<D>, p: ConnectorParams<D>, options?: ConnectorOptions): Tensor<D> {
  const tx = tensorArg<Tensor<D>>(x, 'connector: x');
  const o = optionsArg(options, 'connector');
  return wrap(tx, native().connector(tx.handle, paramsArg(p, 'connector'), o));
}

/**
 * Gradients of connector for the output gradient dY [B, (h/2)·(w/2), H], like y. The forward
 * intermediates are recomputed from x (nothing is kept between the calls); pass the same eps.
 */
export function connectorBackward<D extends FloatDType>(
  x: Tensor<D>, p: ConnectorParams<D>, dY: Tensor<D>, options?: ConnectorOptions,
): ConnectorGradients<D> {
  const tx = tensorArg<Tensor<D>>(x, 'connectorBackward: x');
  const np = paramsArg(p, 'connectorBackward');
  const tdy = tensorArg<Tensor<D>>(dY, 'connectorBackward: dY');
  const o = optionsArg(options, 'connectorBackward');
  const r = native().connectorBackward(tx.handle, np, tdy.handle, o);
  return {
    dx: wrap(tx, r.dx), dLnWeight: wrap(tx, r.dLnWeight), dLnBias: wrap(tx, r.dLnBias),
    dW1: wrap(tx, r.dW1), dB1: wrap(tx, r.dB1), dW2: wrap(tx, r.dW2), dB2: wrap(tx, r.dB2),
  };
}

// The elementwise glue of the Qwen2 decoder and their backwards: rotary position embedding,
// the SwiGLU and GELU activations and the token embedding lookup. CPU: f32; CUDA: f32, bf16, f16 (f32 math).
import { native } from '../core/native.js';
import type { FloatDType, Tensor } from '../core/tensor.js';
import { optionsArg, tensorArg, wrap } from './common.js';

export interface RopeOptions {
  /**
   * The frequency base (the model's `rope_theta`, e.g. 1e6 for Qwen2.5): inv_freq_i = theta^(−2i/D).
   * Required (no default, so a model's value is never silently replaced); finite and > 0.
   */
  theta: number;
}

/** Gradients of swiglu, in the dtype of gate. */
export interface SwigluGradients<D extends FloatDType> {
  dGate: Tensor<D>;
  dUp: Tensor<D>;
}


function ropeOptions(options: RopeOptions, fn: string): RopeOptions {
  // optionsArg passes undefined through; the native side then reports the missing theta.
  return optionsArg(options, fn) as RopeOptions;
}

/**
 * Rotary position embedding, Qwen2 / HF "rotate_half" layout: x [T, H, D] (D even), positions
 * i32 [T]. For i < D/2 with a = positions[t]·theta^(−2i/D):
 * y[t, h, i] = x_i·cos a − x_{i+D/2}·sin a and y[t, h, i+D/2] = x_{i+D/2}·cos a + x_i·sin a.
 * The angle is formed and reduced modulo 2π in f64, so large positions (32k and beyond) keep
 * f32 accuracy. CUDA supports D ≤ 8192. Returns y like x.
 */
export function rope<D extends FloatDType>(x: Tensor<D>, positions: Tensor<'i32'>, options: RopeOptions): Tensor<D> {
  const tx = tensorArg<Tensor<D>>(x, 'rope: x');
  const tp = tensorArg<Tensor<'i32'>>(positions, 'rope: positions');
  return wrap(tx, native().rope(tx.handle, tp.handle, ropeOptions(options, 'rope')));
}

/** Backward of rope: dx = dY rotated by −a (same shapes, checks and options). */
export function ropeBackward<D extends FloatDType>(dY: Tensor<D>, positions: Tensor<'i32'>, options: RopeOptions): Tensor<D> {
  const td = tensorArg<Tensor<D>>(dY, 'ropeBackward: dY');
  const tp = tensorArg<Tensor<'i32'>>(positions, 'ropeBackward: positions');
  return wrap(td, native().ropeBackward(td.handle, tp.handle, ropeOptions(options, 'ropeBackward')));
}

/**
 * silu(gate)·up = gate·σ(gate)·up, elementwise; gate and up of one shape (the MLP's [N, F]) and
 * dtype. Returns y like gate.
 */
export function swiglu<D extends FloatDType>(gate: Tensor<D>, up: Tensor<D>): Tensor<D> {
  const tg = tensorArg<Tensor<D>>(gate, 'swiglu: gate');
  const tu = tensorArg<Tensor<D>>(up, 'swiglu: up');
  return wrap(tg, native().swiglu(tg.handle, tu.handle));
}

/**
 * Backward of swiglu for dY like gate: with s = σ(gate), dGate = dY·up·s·(1 + gate·(1 − s)) and
 * dUp = dY·gate·s.
 */
export function swigluBackward<D extends FloatDType>(gate: Tensor<D>, up: Tensor<D>, dY: Tensor<D>): SwigluGradients<D> {
  const tg = tensorArg<Tensor<D>>(gate, 'swigluBackward: gate');
  const tu = tensorArg<Tensor<D>>(up, 'swigluBackward: up');
  const td = tensorArg<Tensor<D>>(dY, 'swigluBackward: dY');
  const g = native().swigluBackward(tg.handle, tu.handle, td.handle);
  return { dGate: wrap(tg, g.dGate), dUp: wrap(tg, g.dUp) };
}

/**
 * The exact GELU of the ViT MLP, elementwise: y = z·Φ(z) = ½z·erfc(−z/√2) (the erf form, not the
 * tanh approximation). Returns y like z.
 */
export function gelu<D extends FloatDType>(z: Tensor<D>): Tensor<D> {
  const tz = tensorArg<Tensor<D>>(z, 'gelu: z');
  return wrap(tz, native().gelu(tz.handle));
}

/** Backward of gelu: dZ = dY·(Φ(z) + z·φ(z)), for dY like z. */
export function geluBackward<D extends FloatDType>(z: Tensor<D>, dY: Tensor<D>): Tensor<D> {
  const tz = tensorArg<Tensor<D>>(z, 'geluBackward: z');
  const td = tensorArg<Tensor<D>>(dY, 'geluBackward: dY');
  return wrap(tz, native().geluBackward(tz.handle, td.handle));
}

/**
 * Token embedding lookup: out[t] = table[ids[t]], ids i32 [T], table [V, H] → [T, H] like table.
 * An id outside [0, V) is found when the work runs: reading the result then rejects with
 * R1VError('ARGUMENT') naming the first bad index, ids[t] (on CUDA its row is NaN and the next
 * readback reports the bad id without the index).
 */
export function embedding<D extends FloatDType>(ids: Tensor<'i32'>, table: Tensor<D>): Tensor<D> {
  const ti = tensorArg<Tensor<'i32'>>(ids, 'embedding: ids');
  const tt = tensorArg<Tensor<D>>(table, 'embedding: table');
  return wrap(tt, native().embedding(ti.handle, tt.handle));
}

/**
 * Backward of embedding: dTable [V, H] like dY with dTable[v] = Σ_{t: ids[t] = v} dY[t] (rows of
 * unseen ids are 0). dY [T, H]; V ≥ 1 the table's row count. Bad ids are reported like embedding
 * (on CUDA the bad token adds nothing). The CPU sums in token order (deterministic); CUDA adds
 * with f32 atomics, so its result may vary in the last bits between runs.
 */
export function embeddingBackward<D extends FloatDType>(ids: Tensor<'i32'>, dY: Tensor<D>, vocab: number): Tensor<D> {
  const ti = tensorArg<Tensor<'i32'>>(ids, 'embeddingBackward: ids');
  const td = tensorArg<Tensor<D>>(dY, 'embeddingBackward: dY');
  return wrap(td, native().embeddingBackward(ti.handle, td.handle, vocab));
}

// The model's building blocks as explicit forward/backward pairs over the engine's ops. Each
// forward can keep what its backward needs (`save`) or keep nothing (inference, frozen parts,
// or activation recomputation, which calls the forward again from the block's input).
// Activations are 2-D [rows, features] (packed, padding-free batches); attention sees them as
// [rows, heads, headDim] views. Gradients of trainable parameters are added into Parameter.grad;
// frozen parameters get no gradient work at all.
import * as ops from '../ops/index.js';
import type { Tensor } from '../core/tensor.js';
import type { FTensor, Parameter } from './parameters.js';

/** Disposes every tensor among an object's values (saved activations). */
export function disposeTensors(saved: object | undefined): void {
  if (!saved) return;
  for (const value of Object.values(saved)) {
    if (value && typeof value === 'object' && 'dispose' in value && typeof value.dispose === 'function') value.dispose();
  }
}

/** Adds g into p.grad (taking ownership of g), reshaped to p's shape; drops it for frozen p. */
export function accumulateGrad(p: Parameter, g: FTensor): void {
  if (!p.trainable) {
    g.dispose();
    return;
  }
  const shaped = sameShape(g.shape, p.shape) ? g : ops.reshape(g, [...p.shape]);
  if (shaped !== g) g.dispose();
  if (!p.grad) {
    p.grad = shaped;
    return;
  }
  const sum = ops.add(p.grad, shaped);
  p.grad.dispose();
  shaped.dispose();
  p.grad = sum;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** a + b, disposing both (the usual residual or gradient sum). */
function addConsuming(a: FTensor, b: FTensor): FTensor {
  const sum = ops.add(a, b);
  a.dispose();
  b.dispose();
  return sum;
}

/** A Linear layer with PyTorch-layout weight [out, in] (viewed as 2-D) and an optional bias. */
export interface LinearParams {
  weight: Parameter;
  bias?: Parameter | undefined;
}

/** x·Wᵀ + b for x [rows, in]. `weight` overrides the parameter's tensor (a 2-D view of a conv weight). */
export function linear(x: FTensor, l: LinearParams, weight: FTensor = l.weight.value): FTensor {
  return ops.matmul(x, weight, { transB: true, ...(l.bias ? { bias: l.bias.value } : {}) });
}

/** Adds dW = dYᵀ·x and db = Σ dY for trainable weights; returns dX = dY·W when asked. */
export function linearBackward(x: FTensor, l: LinearParams, dY: FTensor, needDx: boolean, weight: FTensor = l.weight.value): FTensor | undefined {
  if (l.weight.trainable) accumulateGrad(l.weight, ops.matmul(dY, x, { transA: true }));
  if (l.bias?.trainable) accumulateGrad(l.bias, ops.sumRows(dY));
  return needDx ? ops.matmul(dY, weight) : undefined;
}

/** LayerNorm (weight and bias) or RMSNorm (weight only) over the last dim. */
export interface NormParams {
  weight: Parameter;
  bias?: Parameter | undefined;
  eps: number;
}

export interface NormResult {
  y: FTensor;
  mean?: Tensor<'f32'> | undefined;
  rstd: Tensor<'f32'>;
}

export function norm(x: FTensor, n: NormParams): NormResult {
  if (n.bias) return ops.layerNorm(x, n.weight.value, n.bias.value, { eps: n.eps });
  return ops.rmsNorm(x, n.weight.value, { eps: n.eps });
}

/** dX of the norm when asked; adds its weight (and bias) gradients. Disposes nothing it was given. */
export function normBackward(x: FTensor, n: NormParams, r: NormResult, dY: FTensor, needDx: boolean): FTensor | undefined {
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

function disposeNorm(r: NormResult | undefined): void {
  r?.y.dispose();
  r?.mean?.dispose();
  r?.rstd.dispose();
}

/** Whether any of the parameters is trainable. */
export function anyTrainable(params: readonly (Parameter | undefined)[]): boolean {
  return params.some((p) => p?.trainable);
}

// ---------------------------------------------------------------------------------------------
// InternViT encoder layer: x + ls1·proj(attn(qkv(norm1(x)))), then + ls2·fc2(gelu(fc1(norm2(·)))).

export interface VisionLayerParams {
  norm1: NormParams;
  qkv: LinearParams;
  qNorm?: NormParams | undefined;
  kNorm?: NormParams | undefined;
  proj: LinearParams;
  norm2: NormParams;
  fc1: LinearParams;
  fc2: LinearParams;
  ls1: Parameter;
  ls2: Parameter;
}

/** The packed tiles of one vision forward: rows = tiles·(1 + patches), one attention sequence per tile. */
export interface VisionRows {
  rows: number;
  cuSeqlens: Int32Array;
  /** Row r of q / k / v is row 3r / 3r+1 / 3r+2 of the fused qkv output viewed as [3·rows, C]. */
  qRows: Tensor<'i32'>;
  kRows: Tensor<'i32'>;
  vRows: Tensor<'i32'>;
}

interface VisionLayerSaved {
  x: FTensor;
  n1: NormResult;
  q: FTensor;
  k: FTensor;
  qn?: NormResult | undefined;
  kn?: NormResult | undefined;
  v: FTensor;
  out: FTensor;
  lse: Tensor<'f32'>;
  a: FTensor;
  x1: FTensor;
  n2: NormResult;
  z: FTensor;
  g: FTensor;
  m: FTensor;
}

export class VisionLayer {
  constructor(
    readonly p: VisionLayerParams,
    readonly heads: number,
    readonly headDim: number,
  ) {}

  parameters(): Parameter[] {
    const p = this.p;
    return [p.norm1.weight, p.norm1.bias, p.qkv.weight, p.qkv.bias, p.qNorm?.weight, p.kNorm?.weight, p.proj.weight,
      p.proj.bias, p.norm2.weight, p.norm2.bias, p.fc1.weight, p.fc1.bias, p.fc2.weight, p.fc2.bias, p.ls1, p.ls2]
      .filter((x): x is Parameter => x !== undefined);
  }

  /** y for x [rows, C]. With save, also what backward needs (x is kept, not copied: do not dispose it before backward). */
  forward(x: FTensor, r: VisionRows, save: boolean): { y: FTensor; saved?: VisionLayerSaved } {
    const p = this.p, c = this.heads * this.headDim;
    const n1 = norm(x, p.norm1);
    const qkv = linear(n1.y, p.qkv);
    const qkvRows = ops.reshape(qkv, [3 * r.rows, c]);
    qkv.dispose();
    const q = ops.gatherRows(qkvRows, r.qRows), k = ops.gatherRows(qkvRows, r.kRows), v = ops.gatherRows(qkvRows, r.vRows);
    qkvRows.dispose();
    const qn = p.qNorm ? norm(q, p.qNorm) : undefined;
    const kn = p.kNorm ? norm(k, p.kNorm) : undefined;
    const shape = [r.rows, this.heads, this.headDim];
    const q3 = ops.reshape(qn?.y ?? q, shape), k3 = ops.reshape(kn?.y ?? k, shape), v3 = ops.reshape(v, shape);
    const att = ops.attention(q3, k3, v3, { cuSeqlensQ: r.cuSeqlens, cuSeqlensK: r.cuSeqlens });
    q3.dispose();
    k3.dispose();
    v3.dispose();
    const out = ops.reshape(att.out, [r.rows, c]);
    att.out.dispose();
    const a = linear(out, p.proj);
    const scaledA = ops.scaleChannels(a, p.ls1.value);
    const x1 = ops.add(x, scaledA);
    scaledA.dispose();
    const n2 = norm(x1, p.norm2);
    const z = linear(n2.y, p.fc1);
    const g = ops.gelu(z);
    const m = linear(g, p.fc2);
    const scaledM = ops.scaleChannels(m, p.ls2.value);
    const y = ops.add(x1, scaledM);
    scaledM.dispose();
    const saved: VisionLayerSaved = { x, n1, q, k, qn, kn, v, out, lse: att.lse, a, x1, n2, z, g, m };
    if (save) return { y, saved };
    for (const t of [q, k, v, out, att.lse, a, x1, z, g, m]) t.dispose();
    for (const n of [n1, qn, kn, n2]) disposeNorm(n);
    return { y };
  }

  /** Consumes saved (except its x) and dY; adds parameter gradients; returns dX when asked. */
  backward(s: VisionLayerSaved, dY: FTensor, r: VisionRows, needDx: boolean): FTensor | undefined {
    const p = this.p, c = this.heads * this.headDim;
    // MLP branch: y = x1 + ls2·m
    const dm = this.scaleBackward(s.m, p.ls2, dY);
    const dg = linearBackward(s.g, p.fc2, dm, true)!;
    dm.dispose();
    const dz = ops.geluBackward(s.z, dg);
    dg.dispose();
    const dn2 = linearBackward(s.n2.y, p.fc1, dz, true)!;
    dz.dispose();
    const dx1Norm = normBackward(s.x1, p.norm2, s.n2, dn2, true)!;
    dn2.dispose();
    const dx1 = ops.add(dY, dx1Norm);
    dx1Norm.dispose();
    // attention branch: x1 = x + ls1·a
    const da = this.scaleBackward(s.a, p.ls1, dx1);
    const dOut = linearBackward(s.out, p.proj, da, true)!;
    da.dispose();
    const shape = [r.rows, this.heads, this.headDim];
    const views = [s.qn?.y ?? s.q, s.kn?.y ?? s.k, s.v, s.out, dOut].map((t) => ops.reshape(t, shape));
    const grads = ops.attentionBackward(views[0]!, views[1]!, views[2]!, views[3]!, s.lse, views[4]!,
      { cuSeqlensQ: r.cuSeqlens, cuSeqlensK: r.cuSeqlens });
    for (const t of [...views, dOut]) t.dispose();
    const dq2 = ops.reshape(grads.dq, [r.rows, c]), dk2 = ops.reshape(grads.dk, [r.rows, c]), dv2 = ops.reshape(grads.dv, [r.rows, c]);
    for (const t of [grads.dq, grads.dk, grads.dv]) t.dispose();
    const dq = s.qn ? normBackward(s.q, p.qNorm!, s.qn, dq2, true)! : dq2;
    const dk = s.kn ? normBackward(s.k, p.kNorm!, s.kn, dk2, true)! : dk2;
    if (dq !== dq2) dq2.dispose();
    if (dk !== dk2) dk2.dispose();
    const dqkvRows = ops.scatterAddRows(dq, r.qRows, 3 * r.rows);
    ops.writeRows(dqkvRows, r.kRows, dk);
    ops.writeRows(dqkvRows, r.vRows, dv2);
    for (const t of [dq, dk, dv2]) t.dispose();
    const dqkv = ops.reshape(dqkvRows, [r.rows, 3 * c]);
    dqkvRows.dispose();
    const dn1 = linearBackward(s.n1.y, p.qkv, dqkv, true)!;
    dqkv.dispose();
    const dxNorm = normBackward(s.x, p.norm1, s.n1, dn1, needDx);
    dn1.dispose();
    for (const t of [s.q, s.k, s.v, s.out, s.lse, s.a, s.x1, s.z, s.g, s.m]) t.dispose();
    for (const n of [s.n1, s.qn, s.kn, s.n2]) disposeNorm(n);
    if (!needDx) {
      dx1.dispose();
      return undefined;
    }
    return addConsuming(dx1, dxNorm!);
  }

  /** For y = t·ls (per channel): adds dLs = Σ dY·t and returns dT = dY·ls. */
  private scaleBackward(t: FTensor, ls: Parameter, dY: FTensor): FTensor {
    const g = ops.scaleChannelsBackward(t, ls.value, dY);
    accumulateGrad(ls, g.dScale);
    return g.dx;
  }
}

// ---------------------------------------------------------------------------------------------
// Qwen2 decoder layer: x + o(attn(rope(q), rope(k), v)) on rmsnorm(x), then + down(swiglu(gate, up)).

export interface LanguageLayerParams {
  inputNorm: NormParams;
  q: LinearParams;
  k: LinearParams;
  v: LinearParams;
  o: LinearParams;
  postNorm: NormParams;
  gate: LinearParams;
  up: LinearParams;
  down: LinearParams;
}

/** The packed sequences of one language forward. */
export interface TokenRows {
  rows: number;
  cuSeqlens: Int32Array;
  /** Position of each row within its sequence (RoPE). */
  positions: Tensor<'i32'>;
}

interface LanguageLayerSaved {
  x: FTensor;
  n1: NormResult;
  q: FTensor;
  k: FTensor;
  v: FTensor;
  out: FTensor;
  lse: Tensor<'f32'>;
  x1: FTensor;
  n2: NormResult;
  gate: FTensor;
  up: FTensor;
  s: FTensor;
}

export class LanguageLayer {
  constructor(
    readonly p: LanguageLayerParams,
    readonly heads: number,
    readonly kvHeads: number,
    readonly headDim: number,
    readonly ropeTheta: number,
  ) {}

  parameters(): Parameter[] {
    const p = this.p;
    return [p.inputNorm.weight, p.q.weight, p.q.bias, p.k.weight, p.k.bias, p.v.weight, p.v.bias, p.o.weight,
      p.postNorm.weight, p.gate.weight, p.up.weight, p.down.weight].filter((x): x is Parameter => x !== undefined);
  }

  /** q, k (roped) and v of the normalised input, as [rows, heads, headDim]. */
  private qkv(h: FTensor, r: TokenRows): { q: FTensor; k: FTensor; v: FTensor } {
    const rope = (t: FTensor, heads: number) => {
      const view = ops.reshape(t, [r.rows, heads, this.headDim]);
      t.dispose();
      const roped = ops.rope(view, r.positions, { theta: this.ropeTheta });
      view.dispose();
      return roped;
    };
    const v = linear(h, this.p.v);
    const v3 = ops.reshape(v, [r.rows, this.kvHeads, this.headDim]);
    v.dispose();
    return { q: rope(linear(h, this.p.q), this.heads), k: rope(linear(h, this.p.k), this.kvHeads), v: v3 };
  }

  /** The MLP half and the attention output projection around `att` [rows, heads, headDim]: y = x1 + mlp(x1). */
  #finish(x: FTensor, att: FTensor, rows: number): FTensor {
    const p = this.p;
    const out = ops.reshape(att, [rows, this.heads * this.headDim]);
    const a = linear(out, p.o);
    out.dispose();
    const x1 = ops.add(x, a);
    a.dispose();
    const n2 = norm(x1, p.postNorm);
    const gate = linear(n2.y, p.gate), up = linear(n2.y, p.up);
    disposeNorm(n2);
    const s = ops.swiglu(gate, up);
    gate.dispose();
    up.dispose();
    const d = linear(s, p.down);
    s.dispose();
    const y = ops.add(x1, d);
    x1.dispose();
    d.dispose();
    return y;
  }

  /** Prefill (no grad): y, and the layer's roped keys and values [rows, kvHeads, headDim] for a KV cache. */
  forwardKv(x: FTensor, r: TokenRows): { y: FTensor; k: FTensor; v: FTensor } {
    const n1 = norm(x, this.p.inputNorm);
    const { q, k, v } = this.qkv(n1.y, r);
    disposeNorm(n1);
    const att = ops.attention(q, k, v, { causal: true, cuSeqlensQ: r.cuSeqlens, cuSeqlensK: r.cuSeqlens });
    q.dispose();
    att.lse.dispose();
    const y = this.#finish(x, att.out, r.rows);
    att.out.dispose();
    return { y, k, v };
  }

  /**
   * One decode step for rows x [A, H] at `positions`: their keys and values are written into the
   * caches [slots·maxLen, kvHeads, headDim] at `cacheRows`, then each row attends to its slot's
   * first seqUsedK keys (cuSeqlensQ/K and seqUsedK describe the slots, see ops.attention).
   */
  decode(x: FTensor, positions: Tensor<'i32'>, cache: { k: FTensor; v: FTensor; rows: Tensor<'i32'> },
    attention: { cuSeqlensQ: Int32Array; cuSeqlensK: Int32Array; seqUsedK: Int32Array }): FTensor {
    const rows = x.shape[0]!;
    const n1 = norm(x, this.p.inputNorm);
    const { q, k, v } = this.qkv(n1.y, { rows, cuSeqlens: attention.cuSeqlensQ, positions });
    disposeNorm(n1);
    ops.writeRows(cache.k, cache.rows, k);
    ops.writeRows(cache.v, cache.rows, v);
    k.dispose();
    v.dispose();
    const att = ops.attention(q, cache.k, cache.v, { causal: true, ...attention });
    q.dispose();
    att.lse.dispose();
    const y = this.#finish(x, att.out, rows);
    att.out.dispose();
    return y;
  }

  forward(x: FTensor, r: TokenRows, save: boolean): { y: FTensor; saved?: LanguageLayerSaved } {
    const p = this.p;
    const n1 = norm(x, p.inputNorm);
    const { q, k, v } = this.qkv(n1.y, r);
    const att = ops.attention(q, k, v, { causal: true, cuSeqlensQ: r.cuSeqlens, cuSeqlensK: r.cuSeqlens });
    const out = ops.reshape(att.out, [r.rows, this.heads * this.headDim]);
    att.out.dispose();
    const a = linear(out, p.o);
    const x1 = ops.add(x, a);
    a.dispose();
    const n2 = norm(x1, p.postNorm);
    const gate = linear(n2.y, p.gate), up = linear(n2.y, p.up);
    const s = ops.swiglu(gate, up);
    const d = linear(s, p.down);
    const y = ops.add(x1, d);
    d.dispose();
    if (save) return { y, saved: { x, n1, q, k, v, out, lse: att.lse, x1, n2, gate, up, s } };
    for (const t of [q, k, v, out, att.lse, x1, gate, up, s]) t.dispose();
    disposeNorm(n1);
    disposeNorm(n2);
    return { y };
  }

  backward(s: LanguageLayerSaved, dY: FTensor, r: TokenRows, needDx: boolean): FTensor | undefined {
    const p = this.p;
    const dS = linearBackward(s.s, p.down, dY, true)!;
    const sw = ops.swigluBackward(s.gate, s.up, dS);
    dS.dispose();
    const dn2Gate = linearBackward(s.n2.y, p.gate, sw.dGate, true)!;
    const dn2Up = linearBackward(s.n2.y, p.up, sw.dUp, true)!;
    sw.dGate.dispose();
    sw.dUp.dispose();
    const dn2 = addConsuming(dn2Gate, dn2Up);
    const dx1Norm = normBackward(s.x1, p.postNorm, s.n2, dn2, true)!;
    dn2.dispose();
    const dx1 = ops.add(dY, dx1Norm);
    dx1Norm.dispose();
    const dOut2 = linearBackward(s.out, p.o, dx1, true)!;
    const dOut = ops.reshape(dOut2, [r.rows, this.heads, this.headDim]);
    dOut2.dispose();
    const out3 = ops.reshape(s.out, [r.rows, this.heads, this.headDim]);
    const g = ops.attentionBackward(s.q, s.k, s.v, out3, s.lse, dOut, { causal: true, cuSeqlensQ: r.cuSeqlens, cuSeqlensK: r.cuSeqlens });
    out3.dispose();
    dOut.dispose();
    const unrope = (dt: FTensor, heads: number) => {
      const d = ops.ropeBackward(dt, r.positions, { theta: this.ropeTheta });
      dt.dispose();
      const flat = ops.reshape(d, [r.rows, heads * this.headDim]);
      d.dispose();
      return flat;
    };
    const dq = unrope(g.dq, this.heads), dk = unrope(g.dk, this.kvHeads);
    const dv = ops.reshape(g.dv, [r.rows, this.kvHeads * this.headDim]);
    g.dv.dispose();
    let dn1: FTensor | undefined;
    for (const [lin, dt] of [[p.q, dq], [p.k, dk], [p.v, dv]] as const) {
      const part = linearBackward(s.n1.y, lin, dt, true)!;
      dt.dispose();
      dn1 = dn1 ? addConsuming(dn1, part) : part;
    }
    const dxNorm = normBackward(s.x, p.inputNorm, s.n1, dn1!, needDx);
    dn1!.dispose();
    for (const t of [s.q, s.k, s.v, s.out, s.lse, s.x1, s.gate, s.up, s.s]) t.dispose();
    disposeNorm(s.n1);
    disposeNorm(s.n2);
    if (!needDx) {
      dx1.dispose();
      return undefined;
    }
    return addConsuming(dx1, dxNorm!);
  }
}

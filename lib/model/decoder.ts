// The Qwen2 decoder layer over packed token rows:
//   x1 = x + o(attn(rope(q), rope(k), v)) on rmsnorm(x)      y = x1 + down(swiglu(gate, up)) on rmsnorm(x1)
// with causal GQA attention per sequence. Three entry points share the two halves: forward
// (training, optionally saving for backward), forwardKv (prefill: also returns the roped keys and
// values for a KV cache) and decode (one new row per sequence against a KV cache).
import type { Tensor } from '../core/tensor.js';
import * as ops from '../ops/index.js';
import { addConsuming, disposeAll, disposeNorm, linear, linearBackward, norm, normBackward, type NormResult } from './blocks.js';
import type { FTensor, LanguageLayerGroup } from './parameters.js';
import type { Block } from './stack.js';

/** The packed sequences of one language forward. */
export interface TokenRows {
  rows: number;
  cuSeqlens: Int32Array;
  /** Position of each row within its sequence (RoPE). */
  positions: Tensor<'i32'>;
}

/** Where one decode step reads and writes a KV cache (see ops.attention's seqUsedK). */
export interface DecodeTarget {
  k: FTensor;
  v: FTensor;
  /** Cache row of each new row's key/value. */
  rows: Tensor<'i32'>;
  cuSeqlensQ: Int32Array;
  cuSeqlensK: Int32Array;
  seqUsedK: Int32Array;
}

/** What the MLP half keeps for backward. */
interface MlpSaved {
  out: FTensor;
  x1: FTensor;
  n2: NormResult;
  gate: FTensor;
  up: FTensor;
  s: FTensor;
}

export interface LanguageLayerSaved extends MlpSaved {
  x: FTensor;
  n1: NormResult;
  q: FTensor;
  k: FTensor;
  v: FTensor;
  lse: Tensor<'f32'>;
}

export class LanguageLayer implements Block<TokenRows, LanguageLayerSaved> {
  constructor(
    readonly p: LanguageLayerGroup,
    readonly heads: number,
    readonly kvHeads: number,
    readonly headDim: number,
    readonly ropeTheta: number,
  ) {}

  /** q, k (roped) and v of the normalised input, as [rows, heads, headDim]. */
  #qkv(h: FTensor, rows: number, positions: Tensor<'i32'>): { q: FTensor; k: FTensor; v: FTensor } {
    const rope = (t: FTensor, heads: number) => {
      const view = ops.reshape(t, [rows, heads, this.headDim]);
      t.dispose();
      const roped = ops.rope(view, positions, { theta: this.ropeTheta });
      view.dispose();
      return roped;
    };
    const v = linear(h, this.p.v);
    const v3 = ops.reshape(v, [rows, this.kvHeads, this.headDim]);
    v.dispose();
    return { q: rope(linear(h, this.p.q), this.heads), k: rope(linear(h, this.p.k), this.kvHeads), v: v3 };
  }

  /**
   * The output projection and the MLP half around the attention output `att` [rows, heads,
   * headDim] (consumed): y = x1 + down(swiglu(gate(n2), up(n2))), x1 = x + o(att). With save, also
   * what backward needs.
   */
  #finish(x: FTensor, att: FTensor, rows: number, save: boolean): { y: FTensor; saved?: MlpSaved } {
    const p = this.p;
    const out = ops.reshape(att, [rows, this.heads * this.headDim]);
    att.dispose();
    const a = linear(out, p.o);
    const x1 = ops.add(x, a);
    a.dispose();
    const n2 = norm(x1, p.postNorm);
    const gate = linear(n2.y, p.gate), up = linear(n2.y, p.up);
    const s = ops.swiglu(gate, up);
    const d = linear(s, p.down);
    const y = ops.add(x1, d);
    d.dispose();
    const saved = { out, x1, n2, gate, up, s };
    if (save) return { y, saved };
    this.#disposeMlp(saved);
    return { y };
  }

  forward(x: FTensor, r: TokenRows, save: boolean): { y: FTensor; saved?: LanguageLayerSaved } {
    const n1 = norm(x, this.p.inputNorm);
    const { q, k, v } = this.#qkv(n1.y, r.rows, r.positions);
    const att = ops.attention(q, k, v, { causal: true, cuSeqlensQ: r.cuSeqlens, cuSeqlensK: r.cuSeqlens });
    const { y, saved } = this.#finish(x, att.out, r.rows, save);
    if (saved) return { y, saved: { ...saved, x, n1, q, k, v, lse: att.lse } };
    disposeAll([q, k, v, att.lse]);
    disposeNorm(n1);
    return { y };
  }

  /** Prefill (no grad): y, and the layer's roped keys and values [rows, kvHeads, headDim] for a KV cache. */
  forwardKv(x: FTensor, r: TokenRows): { y: FTensor; k: FTensor; v: FTensor } {
    const n1 = norm(x, this.p.inputNorm);
    const { q, k, v } = this.#qkv(n1.y, r.rows, r.positions);
    disposeNorm(n1);
    const att = ops.attention(q, k, v, { causal: true, cuSeqlensQ: r.cuSeqlens, cuSeqlensK: r.cuSeqlens });
    disposeAll([q, att.lse]);
    return { y: this.#finish(x, att.out, r.rows, false).y, k, v };
  }

  /**
   * One decode step for rows x [A, H] at `positions`: their keys and values are written into the
   * cache at `target.rows`, then each row attends to its slot's first seqUsedK keys.
   */
  decode(x: FTensor, positions: Tensor<'i32'>, target: DecodeTarget): FTensor {
    const rows = x.shape[0]!;
    const n1 = norm(x, this.p.inputNorm);
    const { q, k, v } = this.#qkv(n1.y, rows, positions);
    disposeNorm(n1);
    ops.writeRows(target.k, target.rows, k);
    ops.writeRows(target.v, target.rows, v);
    disposeAll([k, v]);
    const att = ops.attention(q, target.k, target.v, {
      causal: true, cuSeqlensQ: target.cuSeqlensQ, cuSeqlensK: target.cuSeqlensK, seqUsedK: target.seqUsedK,
    });
    disposeAll([q, att.lse]);
    return this.#finish(x, att.out, rows, false).y;
  }

  backward(s: LanguageLayerSaved, dY: FTensor, r: TokenRows, needDx: boolean): FTensor | undefined {
    const p = this.p;
    const dS = linearBackward(s.s, p.down, dY, true)!;
    const sw = ops.swigluBackward(s.gate, s.up, dS);
    dS.dispose();
    const dn2 = addConsuming(linearBackward(s.n2.y, p.gate, sw.dGate, true)!, linearBackward(s.n2.y, p.up, sw.dUp, true)!);
    disposeAll([sw.dGate, sw.dUp]);
    const dx1Norm = normBackward(s.x1, p.postNorm, s.n2, dn2, true)!;
    dn2.dispose();
    const dx1 = ops.add(dY, dx1Norm);
    dx1Norm.dispose();
    const dOut2 = linearBackward(s.out, p.o, dx1, true)!;
    const dOut = ops.reshape(dOut2, [r.rows, this.heads, this.headDim]);
    dOut2.dispose();
    const out3 = ops.reshape(s.out, [r.rows, this.heads, this.headDim]);
    const g = ops.attentionBackward(s.q, s.k, s.v, out3, s.lse, dOut, { causal: true, cuSeqlensQ: r.cuSeqlens, cuSeqlensK: r.cuSeqlens });
    disposeAll([out3, dOut]);
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
    this.disposeSaved(s);
    if (!needDx) {
      dx1.dispose();
      return undefined;
    }
    return addConsuming(dx1, dxNorm!);
  }

  /** Everything saved but x (the stack owns the block's input). */
  disposeSaved(s: LanguageLayerSaved): void {
    disposeAll([s.q, s.k, s.v, s.lse]);
    disposeNorm(s.n1);
    this.#disposeMlp(s);
  }

  #disposeMlp(s: MlpSaved): void {
    disposeAll([s.out, s.x1, s.gate, s.up, s.s]);
    disposeNorm(s.n2);
  }
}

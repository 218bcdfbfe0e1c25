// The InternViT vision tower: patch embedding (the conv as a GEMM over patchified pixels), CLS
// and position embeddings, then pre-norm bidirectional layers
//   x1 = x + ls1·proj(attn(qkv(norm1(x))))      y = x1 + ls2·fc2(gelu(fc1(norm2(x1))))
// over packed tiles: each tile is one attention sequence of 1 + numPatches rows (CLS first).
// The connector reads the patch rows (CLS dropped) as [tiles, grid, grid, C].
import type { Engine } from '../core/engine.js';
import type { Tensor } from '../core/tensor.js';
import * as ops from '../ops/index.js';
import {
  accumulateGrad, addConsuming, disposeAll, disposeNorm, linear, linearBackward, norm, normBackward, type NormResult,
} from './blocks.js';
import type { VisionConfig } from './config.js';
import type { FTensor, Parameter, VisionGroup, VisionLayerGroup } from './parameters.js';
import type { Block } from './stack.js';

/** The packed tiles of one vision forward, and the index tensors the tower uses (owned here). */
export class VisionRows {
  readonly rows: number;
  readonly cuSeqlens: Int32Array;
  /** Row r of q / k / v is row 3r / 3r+1 / 3r+2 of the fused qkv output viewed as [3·rows, C]. */
  readonly qRows: Tensor<'i32'>;
  readonly kRows: Tensor<'i32'>;
  readonly vRows: Tensor<'i32'>;
  /** Each tile's patch rows (all but its first, the CLS), in order. */
  readonly patchRows: Tensor<'i32'>;

  constructor(engine: Engine, readonly tiles: number, readonly config: VisionConfig) {
    const perTile = config.numPatches + 1;
    this.rows = tiles * perTile;
    this.cuSeqlens = Int32Array.from({ length: tiles + 1 }, (_, i) => i * perTile);
    const index = (f: (r: number) => number, n: number) => engine.tensor<'i32'>(Int32Array.from({ length: n }, (_, r) => f(r)), [n]);
    this.qRows = index((r) => 3 * r, this.rows);
    this.kRows = index((r) => 3 * r + 1, this.rows);
    this.vRows = index((r) => 3 * r + 2, this.rows);
    const p = config.numPatches;
    this.patchRows = index((i) => Math.floor(i / p) * perTile + 1 + (i % p), tiles * p);
  }

  dispose(): void {
    disposeAll([this.qRows, this.kRows, this.vRows, this.patchRows]);
  }
}

export interface VisionLayerSaved {
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
  x: FTensor;
}

export class VisionLayer implements Block<VisionRows, VisionLayerSaved> {
  constructor(
    readonly p: VisionLayerGroup,
    readonly heads: number,
    readonly headDim: number,
  ) {}

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
    const views = [qn?.y ?? q, kn?.y ?? k, v].map((t) => ops.reshape(t, shape));
    const att = ops.attention(views[0]!, views[1]!, views[2]!, { cuSeqlensQ: r.cuSeqlens, cuSeqlensK: r.cuSeqlens });
    disposeAll(views);
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
    this.disposeSaved(saved);
    return { y };
  }

  backward(s: VisionLayerSaved, dY: FTensor, r: VisionRows, needDx: boolean): FTensor | undefined {
    const p = this.p, c = this.heads * this.headDim;
    // MLP branch: y = x1 + ls2·m
    const dm = this.#scaleBackward(s.m, p.ls2, dY);
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
    const da = this.#scaleBackward(s.a, p.ls1, dx1);
    const dOut = linearBackward(s.out, p.proj, da, true)!;
    da.dispose();
    const shape = [r.rows, this.heads, this.headDim];
    const views = [s.qn?.y ?? s.q, s.kn?.y ?? s.k, s.v, s.out, dOut].map((t) => ops.reshape(t, shape));
    const grads = ops.attentionBackward(views[0]!, views[1]!, views[2]!, views[3]!, s.lse, views[4]!,
      { cuSeqlensQ: r.cuSeqlens, cuSeqlensK: r.cuSeqlens });
    disposeAll([...views, dOut]);
    const [dq2, dk2, dv2] = [grads.dq, grads.dk, grads.dv].map((t) => ops.reshape(t, [r.rows, c])) as [FTensor, FTensor, FTensor];
    disposeAll([grads.dq, grads.dk, grads.dv]);
    const dq = s.qn ? normBackward(s.q, p.qNorm!, s.qn, dq2, true)! : dq2;
    const dk = s.kn ? normBackward(s.k, p.kNorm!, s.kn, dk2, true)! : dk2;
    const dqkvRows = ops.scatterAddRows(dq, r.qRows, 3 * r.rows);
    ops.writeRows(dqkvRows, r.kRows, dk);
    ops.writeRows(dqkvRows, r.vRows, dv2);
    disposeAll(new Set([dq, dk, dq2, dk2, dv2]));
    const dqkv = ops.reshape(dqkvRows, [r.rows, 3 * c]);
    dqkvRows.dispose();
    const dn1 = linearBackward(s.n1.y, p.qkv, dqkv, true)!;
    dqkv.dispose();
    const dxNorm = normBackward(s.x, p.norm1, s.n1, dn1, needDx);
    dn1.dispose();
    this.#disposeIntermediates(s);
    if (!needDx) {
      dx1.dispose();
      return undefined;
    }
    return addConsuming(dx1, dxNorm!);
  }

  disposeSaved(s: VisionLayerSaved): void {
    this.#disposeIntermediates(s);
  }

  /** Everything saved but x (the stack owns the block's input). */
  #disposeIntermediates(s: VisionLayerSaved): void {
    disposeAll([s.q, s.k, s.v, s.out, s.lse, s.a, s.x1, s.z, s.g, s.m]);
    for (const n of [s.n1, s.qn, s.kn, s.n2]) disposeNorm(n);
  }

  /** For y = t·ls (per channel): adds dLs = Σ dY·t and returns dT = dY·ls. */
  #scaleBackward(t: FTensor, ls: Parameter, dY: FTensor): FTensor {
    const g = ops.scaleChannelsBackward(t, ls.value, dY);
    accumulateGrad(ls, g.dScale);
    return g.dx;
  }
}

/**
 * Patch embedding + CLS + position embeddings of pixels [tiles, 3, S, S] → x [tiles·(1+P), C].
 * With keepPatches, also the patchified input the patch embedding's backward needs.
 */
export function visionEmbeddings(
  engine: Engine, g: VisionGroup, v: VisionConfig, pixels: FTensor, r: VisionRows, keepPatches: boolean,
): { x: FTensor; patches?: FTensor } {
  const tiles = r.tiles, p = v.patchSize, width = v.hiddenSize, inner = v.numChannels * p * p;
  const cut = ops.patchify(pixels, { patch: p });
  const patches = ops.reshape(cut, [tiles * v.numPatches, inner]);
  cut.dispose();
  const w2 = ops.reshape(g.patchEmbedding.weight.value, [width, inner]);
  const embedded = linear(patches, g.patchEmbedding, w2);
  w2.dispose();
  const cls = ops.reshape(g.classEmbedding.value, [1, width]);
  const zeros = engine.tensor<'i32'>(new Int32Array(r.rows), [r.rows]);
  const base = ops.gatherRows(cls, zeros);
  disposeAll([cls, zeros]);
  const merged = ops.scatterRows(base, r.patchRows, embedded);
  disposeAll([base, embedded]);
  const pos = ops.reshape(g.positionEmbedding.value, [v.numPatches + 1, width]);
  const tiled = ops.reshape(merged, [tiles, v.numPatches + 1, width]);
  merged.dispose();
  const withPos = ops.add(tiled, pos);
  disposeAll([tiled, pos]);
  const x = ops.reshape(withPos, [r.rows, width]);
  withPos.dispose();
  if (keepPatches) return { x, patches };
  patches.dispose();
  return { x };
}

/** Gradients of the patch embedding, CLS and position embeddings from dX [tiles·(1+P), C]. */
export function visionEmbeddingsBackward(engine: Engine, g: VisionGroup, v: VisionConfig, patches: FTensor, dx: FTensor, r: VisionRows): void {
  const tiles = r.tiles, perTile = v.numPatches + 1;
  if (g.positionEmbedding.trainable) {
    const byTile = ops.reshape(dx, [tiles, perTile * v.hiddenSize]);
    accumulateGrad(g.positionEmbedding, ops.sumRows(byTile));
    byTile.dispose();
  }
  if (g.classEmbedding.trainable) {
    const clsIdx = engine.tensor<'i32'>(Int32Array.from({ length: tiles }, (_, t) => t * perTile), [tiles]);
    const rows = ops.gatherRows(dx, clsIdx);
    clsIdx.dispose();
    accumulateGrad(g.classEmbedding, ops.sumRows(rows));
    rows.dispose();
  }
  const conv = g.patchEmbedding;
  if (conv.weight.trainable || conv.bias?.trainable) {
    const dPatches = ops.gatherRows(dx, r.patchRows);
    linearBackward(patches, conv, dPatches, false);
    dPatches.dispose();
  }
}

/** The tower's output without the CLS rows, as the connector reads it: [tiles, grid, grid, C] (x consumed). */
export function patchFeatures(x: FTensor, v: VisionConfig, r: VisionRows): FTensor {
  const flat = ops.gatherRows(x, r.patchRows);
  x.dispose();
  const features = ops.reshape(flat, [r.tiles, v.gridSize, v.gridSize, v.hiddenSize]);
  flat.dispose();
  return features;
}

/** dX of the tower's output [tiles·(1+P), C] from dFeatures [tiles, grid, grid, C] (consumed); CLS rows get 0. */
export function patchFeaturesBackward(dFeatures: FTensor, v: VisionConfig, r: VisionRows): FTensor {
  const flat = ops.reshape(dFeatures, [r.tiles * v.numPatches, v.hiddenSize]);
  dFeatures.dispose();
  const dx = ops.scatterAddRows(flat, r.patchRows, r.rows);
  flat.dispose();
  return dx;
}

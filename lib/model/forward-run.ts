// One forward of the model over a packed batch, and its backward. The order of the work:
//   vision tower (tiles as packed sequences) → CLS dropped → connector → token embeddings with
//   the `<IMG_CONTEXT>` rows overwritten by the image embeddings → decoder → final norm → the
//   scored rows only → fused LM head + token statistics (no [T, V] logits).
// Backward runs the same path in reverse from dL/dlogprob and dL/dentropy per scored row, only
// through the blocks the BackwardPlan names. Everything the run creates is owned by it and
// freed by dispose() (which backward calls at the end).
import type { Engine } from '../core/engine.js';
import { Fence } from '../core/fence.js';
import type { Tensor } from '../core/tensor.js';
import type { Batch } from '../data/batch.js';
import * as ops from '../ops/index.js';
import { backwardPlan, type BackwardPlan } from './backward-plan.js';
import type { BatchPlan } from './batch-plan.js';
import { accumulateGrad, addConsuming, disposeAll, disposeNorm, linear, linearBackward, norm, normBackward, type NormResult } from './blocks.js';
import type { ModelConfig } from './config.js';
import type { LanguageLayer, LanguageLayerSaved, TokenRows } from './decoder.js';
import { leavesOf, type ConnectorGroup, type FTensor, type ModelGroups, type Parameter } from './parameters.js';
import { Stack } from './stack.js';
import {
  patchFeatures, patchFeaturesBackward, visionEmbeddings, visionEmbeddingsBackward, VisionRows, type VisionLayer, type VisionLayerSaved,
} from './vision.js';

/** What a run needs of the model. */
export interface ModelParts {
  readonly engine: Engine;
  readonly config: ModelConfig;
  readonly dtype: 'f32' | 'bf16';
  readonly recompute: boolean;
  readonly groups: ModelGroups;
  readonly visionLayers: readonly VisionLayer[];
  readonly languageLayers: readonly LanguageLayer[];
}

/** The connector's weights as ops.connector takes them. */
export function connectorTensors(g: ConnectorGroup): ops.ConnectorParams {
  return { lnWeight: g.norm.weight.value, lnBias: g.norm.bias!.value, w1: g.fc1.weight.value, b1: g.fc1.bias!.value, w2: g.fc2.weight.value, b2: g.fc2.bias!.value };
}

/** The connector's gradients, in the order of ConnectorGradients, paired with their parameters. */
function connectorGradients(g: ConnectorGroup, d: ops.ConnectorGradients): Array<[ConnectorGroup['fc1']['weight'], FTensor]> {
  return [[g.norm.weight, d.dLnWeight], [g.norm.bias!, d.dLnBias], [g.fc1.weight, d.dW1], [g.fc1.bias!, d.dB1], [g.fc2.weight, d.dW2], [g.fc2.bias!, d.dB2]];
}

/** How a run computes. */
export interface RunOptions {
  /** Statistics of softmax(logits / temperature). */
  temperature: number;
  /** Keep what backward needs. */
  grad: boolean;
  /** Compute logprobs and entropy through the LM head (a critic that needs values only does not). */
  tokenStats: boolean;
}

export class ForwardRun {
  stats: { logprobs: Tensor<'f32'>; entropy: Tensor<'f32'> } | undefined;
  /** The value head's output [N] (a model with one). */
  values: FTensor | undefined;
  readonly temperature: number;
  readonly grad: boolean;
  readonly tokenStats: boolean;
  readonly needs: BackwardPlan;
  readonly #fence: Fence;
  readonly #owned: Tensor[] = [];
  #visionRows: VisionRows | undefined;
  #visionStack: Stack<VisionRows, VisionLayerSaved> | undefined;
  #patches: FTensor | undefined;        // patchified pixels, for the patch embedding's backward
  #features: FTensor | undefined;       // connector input [tiles, grid, grid, C]
  #embedInput: Tensor<'i32'> | undefined;
  #imageRows: Tensor<'i32'> | undefined;
  #tokenRows: TokenRows | undefined;
  #languageStack: Stack<TokenRows, LanguageLayerSaved> | undefined;
  #head: { x: FTensor; n: NormResult; hidden: FTensor } | undefined;
  #scoredRows: Tensor<'i32'> | undefined;
  #scoredTargets: Tensor<'i32'> | undefined;
  #finished: ((params: readonly Parameter[]) => void) | undefined;

  constructor(
    readonly model: ModelParts,
    readonly plan: BatchPlan,
    readonly batch: Batch,
    options: RunOptions,
  ) {
    this.temperature = options.temperature;
    this.grad = options.grad;
    this.tokenStats = options.tokenStats;
    this.needs = backwardPlan(model.groups, plan.tiles > 0, options.grad);
    this.#fence = new Fence(model.engine);
  }

  /** An i32 index tensor owned by this run. */
  #indices(values: Int32Array): Tensor<'i32'> {
    const t = this.model.engine.tensor<'i32'>(values, [values.length]);
    this.#owned.push(t);
    return t;
  }

  /** Token embeddings [T, H] with the image rows replaced by the connector's output. */
  async embed(): Promise<FTensor> {
    const m = this.model, cfg = m.config, plan = this.plan, needs = this.needs, lm = m.groups.language;
    let imageEmbeds: FTensor | undefined;
    if (plan.tiles > 0) {
      const v = cfg.vision!, vg = m.groups.vision!;
      const rows = new VisionRows(m.engine, plan.tiles, v);
      this.#visionRows = rows;
      const pixels = m.engine.tensor(this.batch.pixelValues!, [plan.tiles, v.numChannels, v.imageSize, v.imageSize], { dtype: m.dtype });
      const embedded = visionEmbeddings(m.engine, vg, v, pixels, rows, needs.visionEmbeddings);
      pixels.dispose();
      this.#patches = embedded.patches;
      this.#visionStack = new Stack(m.visionLayers, rows, this.#fence);
      const x = await this.#visionStack.forward(embedded.x, needs.visionLayer, m.recompute);
      const features = patchFeatures(x, v, rows);
      const embeds = ops.connector(features, connectorTensors(m.groups.connector!), { eps: m.groups.connector!.norm.eps });
      if (needs.connector) this.#features = features;
      else features.dispose();
      imageEmbeds = ops.reshape(embeds, [plan.tiles * cfg.connector!.tokensPerTile, cfg.language.hiddenSize]);
      embeds.dispose();
    }
    const ids = this.#indices(this.batch.inputIds);
    let x = ops.embedding(ids, lm.embedTokens.value);
    if (imageEmbeds) {
      this.#imageRows = this.#indices(plan.imagePositions);
      const merged = ops.scatterRows(x, this.#imageRows, imageEmbeds);
      disposeAll([x, imageEmbeds]);
      x = merged;
    }
    this.#embedInput = ids;
    return x;
  }

  /** Rows of the batch as the decoder sees them. */
  tokenRows(): TokenRows {
    this.#tokenRows ??= { rows: this.plan.tokens, cuSeqlens: this.batch.cuSeqlens, positions: this.#indices(this.plan.positions) };
    return this.#tokenRows;
  }

  async forward(): Promise<void> {
    const m = this.model, lm = m.groups.language, needs = this.needs;
    this.#languageStack = new Stack(m.languageLayers, this.tokenRows(), this.#fence);
    const x = await this.#languageStack.forward(await this.embed(), needs.languageLayer, m.recompute);
    const n = norm(x, lm.norm);
    this.#scoredRows = this.#indices(this.plan.scored);
    this.#scoredTargets = this.#indices(this.plan.scoredTargets);
    const hidden = ops.gatherRows(n.y, this.#scoredRows);
    if (this.tokenStats) this.stats = ops.linearTokenStats(hidden, lm.head.value, this.#scoredTargets, { temperature: this.temperature });
    const vh = m.groups.valueHead;
    if (vh) {
      const v = linear(hidden, vh);
      this.values = ops.reshape(v, [this.plan.scored.length]);
      v.dispose();
    }
    if (needs.any) {
      this.#head = { x, n, hidden };
    } else {
      disposeAll([x, hidden]);
      disposeNorm(n);
    }
  }

  /** Frees the readback outputs (statistics, values) once the caller has read them. */
  releaseOutputs(): void {
    disposeAll([this.stats?.logprobs, this.stats?.entropy, this.values]);
    this.stats = undefined;
    this.values = undefined;
  }

  /**
   * Gradients from the per-token coefficients (each [N] or absent: zero). `finished` hears of
   * the parameters whose gradients are final as their blocks' backward is queued (the head and
   * final norm, each decoder layer, the embeddings, the connector, each vision layer), and of
   * every parameter at the end.
   */
  async backward(d: { dLogprobs?: Float32Array | undefined; dEntropy?: Float32Array | undefined; dValues?: Float32Array | undefined },
    finished?: (params: readonly Parameter[]) => void): Promise<void> {
    this.#finished = finished;
    await this.#backward(d);
    finished?.(leavesOf<Parameter>(this.model.groups));
  }

  async #backward(d: { dLogprobs?: Float32Array | undefined; dEntropy?: Float32Array | undefined; dValues?: Float32Array | undefined }): Promise<void> {
    const m = this.model, e = m.engine, plan = this.plan, needs = this.needs, lm = m.groups.language;
    if (!needs.any) return;
    const head = this.#head!;
    this.#head = undefined;
    const n = plan.scored.length;
    const coefficients = (values: Float32Array | undefined) => e.tensor(values ?? new Float32Array(n), [n]);
    let dHidden: FTensor | undefined;
    if (this.tokenStats) {
      const dl = coefficients(d.dLogprobs), de = coefficients(d.dEntropy);
      const g = ops.linearTokenStatsBackward(head.hidden, lm.head.value, this.#scoredTargets!, dl, de, { temperature: this.temperature });
      disposeAll([dl, de]);
      accumulateGrad(lm.head, g.dWeight);
      dHidden = g.dHidden;
    }
    const vh = m.groups.valueHead;
    if (vh) {
      const dv = e.tensor(d.dValues ?? new Float32Array(n), [n, 1], { dtype: m.dtype });
      const dFromValue = linearBackward(head.hidden, vh, dv, true)!;
      dv.dispose();
      dHidden = dHidden ? addConsuming(dHidden, dFromValue) : dFromValue;
    }
    head.hidden.dispose();
    const needDx = needs.languageDx[m.languageLayers.length]!;
    let dx: FTensor | undefined;
    if (dHidden && (needDx || lm.norm.weight.trainable)) {
      const dNormed = ops.scatterAddRows(dHidden, this.#scoredRows!, plan.tokens);
      dx = normBackward(head.x, lm.norm, head.n, dNormed, needDx);
      dNormed.dispose();
    }
    dHidden?.dispose();
    head.x.dispose();
    disposeNorm(head.n);
    // a head tied to the embedding table is final only after the embeddings' backward
    this.#finished?.([...(lm.head === lm.embedTokens ? [] : [lm.head]), ...leavesOf<Parameter>(lm.norm), ...leavesOf<Parameter>(vh)]);
    if (dx) dx = await this.#languageStack!.backward(dx, needs.languageDx, (i) => this.#finished?.(leavesOf<Parameter>(lm.layers[i])));
    if (dx) await this.#embeddingsBackward(dx);
  }

  /** The gradient of the token embeddings [T, H] (consumed): image rows to the connector, the rest to the table. */
  async #embeddingsBackward(dx: FTensor): Promise<void> {
    const m = this.model, plan = this.plan, table = m.groups.language.embedTokens;
    let dImage: FTensor | undefined;
    let dTokens = dx;
    if (this.#imageRows && this.needs.connector) {
      dImage = ops.gatherRows(dx, this.#imageRows);
      if (table.trainable) {
        const zeros = m.engine.zeros([plan.imagePositions.length, m.config.language.hiddenSize], { dtype: m.dtype });
        dTokens = ops.scatterRows(dx, this.#imageRows, zeros);
        disposeAll([zeros, dx]);
      }
    }
    if (table.trainable) accumulateGrad(table, ops.embeddingBackward(this.#embedInput!, dTokens, m.config.language.vocabSize));
    dTokens.dispose();
    this.#finished?.([table]);
    if (dImage) await this.#visionBackward(dImage);
  }

  /** From the gradient of the image embeddings (consumed) through the connector and the tower. */
  async #visionBackward(dImage: FTensor): Promise<void> {
    const m = this.model, cfg = m.config, v = cfg.vision!, cg = m.groups.connector!, rows = this.#visionRows!;
    const dEmbeds = ops.reshape(dImage, [rows.tiles, cfg.connector!.tokensPerTile, cfg.language.hiddenSize]);
    dImage.dispose();
    const g = ops.connectorBackward(this.#features!, connectorTensors(cg), dEmbeds, { eps: cg.norm.eps });
    dEmbeds.dispose();
    for (const [p, grad] of connectorGradients(cg, g)) accumulateGrad(p, grad);
    this.#finished?.(leavesOf<Parameter>(cg));
    if (!this.needs.visionDx[m.visionLayers.length]) {
      g.dx.dispose();
      return;
    }
    const dx = await this.#visionStack!.backward(patchFeaturesBackward(g.dx, v, rows), this.needs.visionDx,
      (i) => this.#finished?.(leavesOf<Parameter>(m.groups.vision!.layers[i])));
    if (dx && this.#patches) visionEmbeddingsBackward(m.engine, m.groups.vision!, v, this.#patches, dx, rows);
    dx?.dispose();
  }

  dispose(): void {
    this.#fence.close();
    this.#visionStack?.dispose();
    this.#languageStack?.dispose();
    this.#visionRows?.dispose();
    disposeAll([...this.#owned, this.#patches, this.#features, this.#head?.x, this.#head?.hidden]);
    this.releaseOutputs();
    disposeNorm(this.#head?.n);
    this.#owned.length = 0;
    this.#head = undefined;
  }
}

// VisionLanguageModel: InternViT → pixel-shuffle MLP connector → Qwen2 decoder, trained on
// packed (padding-free) batches with per-token coefficients. The forward scores only the
// positions with a target, through the fused LM head + token statistics op (the [T, V] logits
// are never stored); backward takes dL/dlogprob and dL/dentropy per scored token (the seam the
// RL losses use) and adds gradients into the trainable parameters only. Generation uses the same
// weights through a KvCache: prefill, decodeStep and logits.
//
// This file is the facade: construction, Hugging Face load/save, the parameter API and the
// entry points. The work lives beside it: parameters.ts (groups and names), vision.ts and
// decoder.ts (the layers), stack.ts, forward-run.ts, backward-plan.ts, batch-plan.ts, kv-cache.ts.
import { randomUUID } from 'node:crypto';

import type { Engine } from '../core/engine.js';
import { R1VError } from '../core/errors.js';
import type { FloatDType, Tensor } from '../core/tensor.js';
import * as is from '../core/validate.js';
import type { Batch } from '../data/batch.js';
import { loadTensors, openModelDirectory, saveModelDirectory } from '../io/hf-checkpoint.js';
import * as ops from '../ops/index.js';
import { planBatch } from './batch-plan.js';
import { parseModelConfig, type ModelConfig } from './config.js';
import { LanguageLayer } from './decoder.js';
import { ForwardResult, type BackwardInput, type TokenStatsResult } from './forward-result.js';
import { ForwardRun } from './forward-run.js';

export { ForwardResult, type BackwardInput, type BackwardOptions, type TokenStatsResult } from './forward-result.js';
import { decodeStep, KvCache, logits, prefill, type PrefillCopy } from './kv-cache.js';
import {
  findParameter, initializerOf, modelLayout, numelOf, parameterSpecs, redundantNames, resolveGroups,
  type FTensor, type ModelGroups, type ModulePart, type Parameter, type ParameterInfo, type ParameterSpec,
} from './parameters.js';
import { VisionLayer } from './vision.js';

export type { Batch } from '../data/batch.js';

export interface ForwardOptions {
  /** Keep what backward needs. Default false. */
  grad?: boolean;
  /** The statistics are of softmax(logits / temperature); finite, > 0. Default 1. */
  temperature?: number;
  /**
   * Compute logprobs and entropy through the LM head. Default true; a critic that only needs
   * `values` passes false (the vocabulary-sized head is then skipped; logprobs/entropy are empty).
   */
  tokenStats?: boolean;
}

export interface ModelOptions {
  /** Compute dtype of weights and activations: 'f32' (CPU, default there) or 'bf16' (CUDA default). */
  dtype?: 'f32' | 'bf16';
  /** Recompute each block's activations in backward instead of keeping them (less memory, ~1/3 more compute). */
  recompute?: boolean;
  /** `<IMG_CONTEXT>` token id when the config has none (InternVL takes it from the tokenizer). */
  imageContextTokenId?: number;
  /** Receives warnings (unknown config fields, ignored checkpoint tensors). Default console.warn. */
  warn?: (message: string) => void;
  /**
   * Add a value head (a critic for PPO with GAE): Linear(H, 1) `value_head` on the final-norm
   * hidden state; forward then returns `values` per scored position. Loading a checkpoint without
   * one (a policy) initialises it (weight N(0, 0.02²), bias 0). Default false.
   */
  valueHead?: boolean;
}

export interface CreateOptions extends ModelOptions {
  /** Seed of the random initialisation (same seed, same weights on the same device). Default 0. */
  seed?: number;
}

export interface LoadOptions extends ModelOptions {
  /** Load weights that hold NaN or ±Inf instead of refusing them (R1VError('IO') naming the tensors). Default false. */
  allowNonFinite?: boolean;
}

export interface SaveOptions {
  /** Stored dtype of the weights. Default 'f32' (exact; 'bf16' halves the size, as HF InternVL ships). */
  dtype?: 'f32' | 'bf16';
  /** Largest shard in bytes (default 5e9, Hugging Face's). */
  maxShardBytes?: number;
}

/** What setTrainable accepts: parts on/off (omitted parts keep their state) or a predicate on names. */
export type TrainableSelection = { vision?: boolean; connector?: boolean; language?: boolean; value?: boolean } | ((name: string) => boolean);

const MODEL_OPTIONS = ['dtype', 'recompute', 'imageContextTokenId', 'warn', 'valueHead'] as const;

function isModelConfig(x: unknown): x is ModelConfig {
  return typeof x === 'object' && x !== null && 'raw' in x && 'language' in x && 'modelType' in x;
}

function checkModelOptions(options: ModelOptions, engine: Engine, fn: string, extra: readonly string[] = []): 'f32' | 'bf16' {
  const o = is.options(options, [...MODEL_OPTIONS, ...extra], fn);
  const isCuda = engine.device.kind === 'cuda';
  const dtype = is.optionalOneOf(o.dtype, 'dtype', fn, ['f32', 'bf16'] as const, isCuda ? 'bf16' : 'f32');
  if (dtype === 'bf16' && !isCuda) throw new R1VError('DTYPE', `${fn}: dtype 'bf16' needs a CUDA engine (the CPU computes in f32)`);
  if (o.imageContextTokenId !== undefined) is.number(o.imageContextTokenId, 'imageContextTokenId', fn, { integer: true, min: 0 });
  if (o.recompute !== undefined) is.boolean(o.recompute, 'recompute', fn);
  if (o.warn !== undefined) is.func(o.warn, 'warn', fn);
  if (o.valueHead !== undefined) is.boolean(o.valueHead, 'valueHead', fn);
  return dtype;
}

/** A parameter of the layout with its random initial values (each from its own seeded stream). */
function initialParameter(engine: Engine, spec: ParameterSpec, config: ModelConfig, seed: number, index: number, dtype: 'f32' | 'bf16'): Parameter {
  const init = initializerOf(spec, config);
  const shape = [...spec.shape];
  let master: Tensor<'f32'>;
  if ('constant' in init) {
    master = engine.full(shape, init.constant);
  } else {
    const unit = engine.randn(shape, { seed: seed * 65_536 + index });
    master = ops.scale(unit, init.std);
    unit.dispose();
  }
  return makeParameter(spec, master, dtype);
}

function makeParameter(spec: ParameterSpec, master: Tensor<'f32'>, dtype: 'f32' | 'bf16'): Parameter {
  if (dtype === 'f32') return { ...spec, value: master, master: undefined, grad: undefined, trainable: true };
  return { ...spec, value: ops.cast(master, 'bf16'), master, grad: undefined, trainable: true };
}

function disposeParameter(p: Parameter): void {
  p.value.dispose();
  p.master?.dispose();
  p.grad?.dispose();
  p.grad = undefined;
}

export class VisionLanguageModel {
  readonly engine: Engine;
  readonly config: ModelConfig;
  /** Compute dtype of weights and activations. */
  readonly dtype: 'f32' | 'bf16';
  /** Recompute activations in backward (see ModelOptions.recompute). */
  recompute: boolean;
  /** Token id whose positions receive image embeddings. */
  imageContextTokenId: number | undefined;
  /** @internal The parameters by module (see parameters.ts). */
  readonly groups: ModelGroups;
  /** @internal */
  readonly visionLayers: readonly VisionLayer[];
  /** @internal */
  readonly languageLayers: readonly LanguageLayer[];

  readonly #params: Map<string, Parameter>;
  #disposed = false;
  /** The id of the current weights (see stateId); undefined until asked for, and after they change. */
  #stateId: string | undefined;

  private constructor(engine: Engine, config: ModelConfig, dtype: 'f32' | 'bf16', params: Map<string, Parameter>, options: ModelOptions) {
    this.engine = engine;
    this.config = config;
    this.dtype = dtype;
    this.recompute = options.recompute ?? false;
    this.imageContextTokenId = options.imageContextTokenId ?? config.imageContextTokenId;
    this.#params = params;
    this.groups = resolveGroups(modelLayout(config, { valueHead: options.valueHead === true }), params);
    const v = config.vision, lm = config.language;
    this.visionLayers = (this.groups.vision?.layers ?? []).map((g) => new VisionLayer(g, v!.numAttentionHeads, v!.headDim));
    this.languageLayers = this.groups.language.layers.map((g) =>
      new LanguageLayer(g, lm.numAttentionHeads, lm.numKeyValueHeads, lm.headDim, lm.ropeTheta));
  }

  // ---- construction, loading, saving --------------------------------------------------------

  /**
   * A randomly initialised model (Hugging Face-style init, see parameters.ts) from a config in
   * Hugging Face form (InternVLChatConfig or Qwen2Config JSON) or an already parsed ModelConfig.
   * Every parameter is trainable.
   */
  static create(engine: Engine, config: unknown, options: CreateOptions = {}): VisionLanguageModel {
    const fn = 'VisionLanguageModel.create';
    const dtype = checkModelOptions(options, engine, fn, ['seed']);
    const seed = is.optionalNumber(options.seed, 'seed', fn, 0, { integer: true, min: 0 });
    const parsed = isModelConfig(config) ? config : parseModelConfig(config, { source: fn, ...(options.warn ? { warn: options.warn } : {}) });
    const params = new Map<string, Parameter>();
    // Each parameter gets its own stream of the seeded generator: the values do not depend on the others.
    parameterSpecs(parsed, { valueHead: options.valueHead === true }).forEach((spec, i) => {
      params.set(spec.name, initialParameter(engine, spec, parsed, seed, i, dtype));
    });
    return new VisionLanguageModel(engine, parsed, dtype, params, options);
  }

  /**
   * Loads a Hugging Face model directory: config.json plus model.safetensors or a sharded
   * model.safetensors.index.json, with InternVL names (or plain Qwen2 names for a text-only
   * model). Tensors are read one at a time (f32, bf16 or f16). Missing, unexpected or wrong-shaped
   * tensors fail with one R1VError('IO') listing them, before any weight is read; so do weights
   * holding NaN or ±Inf, unless `allowNonFinite`. Only regular files inside dir are read. When
   * config.json is the one a save interrupted between its weights and its config left behind (or
   * is missing), the config the weights were saved with is used, with a warning (see io/hf-checkpoint.ts).
   */
  static async load(engine: Engine, dir: string, options: LoadOptions = {}): Promise<VisionLanguageModel> {
    const fn = 'VisionLanguageModel.load';
    const dtype = checkModelOptions(options, engine, fn, ['allowNonFinite']);
    const allowNonFinite = is.optionalBoolean(options.allowNonFinite, 'allowNonFinite', fn, false);
    const warn = options.warn ?? ((m: string) => console.warn(m));
    await using source = await openModelDirectory(dir, fn, warn);
    const config = parseModelConfig(source.config, { source: source.configSource, warn });
    const layout = { valueHead: options.valueHead === true };
    const specs = parameterSpecs(config, layout);
    const bySpec = new Map(specs.map((s) => [s.name, s]));
    const params = new Map<string, Parameter>();
    const valueHead = new Set(specs.filter((s) => s.part === 'value').map((s) => s.name));
    try {
      const absent = await loadTensors(source.checkpoint, specs, { redundant: redundantNames(config, layout), optional: valueHead, allowNonFinite, warn, fn }, (name, data) => {
        const spec = bySpec.get(name)!;
        params.set(name, makeParameter(spec, engine.tensor(data, [...spec.shape]), dtype));
      });
      for (const name of absent) params.set(name, initialParameter(engine, bySpec.get(name)!, config, 0, specs.indexOf(bySpec.get(name)!), dtype));
      // Keep checkpoint order: the map's order is the parameters() order.
      const ordered = new Map(specs.map((s) => [s.name, params.get(s.name)!]));
      params.clear();
      for (const [k, v] of ordered) params.set(k, v);
    } catch (error) {
      for (const p of params.values()) disposeParameter(p);
      throw error;
    }
    const model = new VisionLanguageModel(engine, config, dtype, params, options);
    model.#stateId = source.stateId;
    return model;
  }

  /**
   * Writes a Hugging Face directory (created if needed): the weights under their HF names (f32
   * masters when the model has them), streamed tensor by tensor, then config.json (the config as
   * given, plus `img_context_token_id` when the model knows it and the config lacks it). Crash-safe
   * and exclusive (see io/checkpoint.ts): a kill leaves the old or the new checkpoint, a concurrent
   * save into dir is refused with R1VError('IO'). The weights record the id of this state of the
   * weights, which AdamW.save pairs with. A tied LM head is not written (HF ties it back on load).
   */
  async save(dir: string, options: SaveOptions = {}): Promise<void> {
    const fn = 'VisionLanguageModel.save';
    this.#checkAlive(fn);
    const o = is.options(options, ['dtype', 'maxShardBytes'] as const, fn);
    const stored = is.optionalOneOf(o.dtype, 'dtype', fn, ['f32', 'bf16'] as const, 'f32');
    const stateId = this.stateId();
    await this.engine.synchronize();
    const tensors = [...this.#params.values()].map((p) => ({
      name: p.name,
      dtype: stored === 'f32' ? 'F32' as const : 'BF16' as const,
      shape: p.shape,
      data: () => (p.master ?? p.value).toArray() as Promise<Float32Array>,
    }));
    const raw = this.config.raw, id = this.imageContextTokenId;
    const addImageToken = this.config.vision !== undefined && raw.img_context_token_id == null
      && id !== undefined && id < this.config.language.vocabSize;
    await saveModelDirectory(dir, addImageToken ? { ...raw, img_context_token_id: id } : raw, tensors, {
      fn, stateId, metadata: { format: 'pt' }, ...(options.maxShardBytes ? { maxShardBytes: options.maxShardBytes } : {}),
    });
  }

  /**
   * @internal An id of the model's current weights: the same until they change (setParameter, an
   * optimizer step), taken from the files on load. A model save records it, and so does an
   * optimizer save, so that a model and an optimizer state from different steps are told apart.
   */
  stateId(): string {
    this.#stateId ??= randomUUID();
    return this.#stateId;
  }

  /** @internal Marks the weights as changed (a new stateId); code that updates parameters in place calls it. */
  weightsChanged(): void {
    this.#stateId = undefined;
  }

  // ---- parameters ---------------------------------------------------------------------------

  /** Every parameter, in checkpoint order. */
  parameters(): ParameterInfo[] {
    return [...this.#params.values()].map((p) => ({
      name: p.name, shape: p.shape, dtype: p.value.dtype, trainable: p.trainable, part: p.part, kind: p.kind,
    }));
  }

  /** Number of scalars, all parameters or only the trainable ones. */
  numParameters(options: { trainableOnly?: boolean } = {}): number {
    let n = 0;
    for (const p of this.#params.values()) if (!options.trainableOnly || p.trainable) n += numelOf(p.shape);
    return n;
  }

  /**
   * Chooses what trains: `{ vision, connector, language }` (omitted parts keep their state) or a
   * predicate on parameter names. Frozen parameters lose their gradient and master copy and get
   * no backward work; R1V3's connector-only stage is `{ vision: false, connector: true, language: false }`.
   */
  setTrainable(selection: TrainableSelection): void {
    const fn = 'setTrainable';
    this.#checkAlive(fn);
    let decide: (p: Parameter) => boolean;
    if (typeof selection === 'function') {
      decide = (p) => {
        const r = selection(p.name);
        if (typeof r !== 'boolean') throw new R1VError('ARGUMENT', `${fn}: the predicate returned ${String(r)} for ${p.name} (need a boolean)`);
        return r;
      };
    } else if (typeof selection === 'object' && selection !== null) {
      for (const [k, v] of Object.entries(selection)) {
        if (!['vision', 'connector', 'language', 'value'].includes(k)) throw new R1VError('ARGUMENT', `${fn}: unknown part '${k}' (vision, connector, language, value)`);
        if (v !== undefined && typeof v !== 'boolean') throw new R1VError('ARGUMENT', `${fn}: ${k} must be a boolean`);
      }
      const s = selection as Record<ModulePart, boolean | undefined>;
      decide = (p) => s[p.part] ?? p.trainable;
    } else {
      throw new R1VError('ARGUMENT', `${fn}: pass { vision, connector, language } or a (name) => boolean predicate`);
    }
    const next = new Map([...this.#params.values()].map((p) => [p, decide(p)]));
    for (const [p, on] of next) {
      if (on === p.trainable) continue;
      p.trainable = on;
      if (on) {
        if (p.value.dtype !== 'f32') p.master = ops.cast(p.value, 'f32');
      } else {
        p.grad?.dispose();
        p.grad = undefined;
        p.master?.dispose();
        p.master = undefined;
      }
    }
  }

  /** A parameter's values (f32: the master copy when there is one). */
  async getParameter(name: string): Promise<Float32Array> {
    this.#checkAlive('getParameter');
    const p = findParameter(this.#params, name, 'getParameter');
    return (await (p.master ?? p.value).toArray()) as Float32Array;
  }

  /** Overwrites a parameter (and its master copy); values.length must equal its element count. */
  setParameter(name: string, values: Float32Array): void {
    const fn = 'setParameter';
    this.#checkAlive(fn);
    const p = findParameter(this.#params, name, fn);
    if (!(values instanceof Float32Array) || values.length !== numelOf(p.shape)) {
      throw new R1VError('SHAPE', `${fn}(${name}): need a Float32Array of ${numelOf(p.shape)} values (shape ${JSON.stringify(p.shape)})`);
    }
    const shape = [...p.shape];
    this.weightsChanged();
    const value = this.engine.tensor(values, shape, { dtype: p.value.dtype as FloatDType });
    p.value.dispose();
    p.value = value;
    if (p.master) {
      p.master.dispose();
      p.master = this.engine.tensor(values, shape);
    }
  }

  /** A parameter's accumulated gradient (f32 values), or undefined when it has none. */
  async getGradient(name: string): Promise<Float32Array | undefined> {
    this.#checkAlive('getGradient');
    const p = findParameter(this.#params, name, 'getGradient');
    return p.grad ? ((await p.grad.toArray()) as Float32Array) : undefined;
  }

  /** Drops every accumulated gradient. */
  zeroGrad(): void {
    for (const p of this.#params.values()) {
      p.grad?.dispose();
      p.grad = undefined;
    }
  }

  /** @internal The optimizer's view of the parameters. */
  parameterStates(): Parameter[] {
    this.#checkAlive('parameterStates');
    return [...this.#params.values()];
  }

  /** Frees every device tensor of the model. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const p of this.#params.values()) disposeParameter(p);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  // ---- forward / backward -------------------------------------------------------------------

  /**
   * Runs the model on a packed batch and returns logprobs and entropy of the scored positions.
   * With { grad: true } the result's backward() adds the gradients of the trainable parameters.
   */
  async forward(batch: Batch, options: ForwardOptions = {}): Promise<ForwardResult> {
    const fn = 'forward';
    this.#checkAlive(fn);
    const o = is.options(options, ['grad', 'temperature', 'tokenStats'] as const, fn);
    const temperature = is.optionalNumber(o.temperature, 'temperature', fn, 1, { above: 0 });
    const withStats = is.optionalBoolean(o.tokenStats, 'tokenStats', fn, true);
    const plan = planBatch(this.config, this.imageContextTokenId, batch, fn);
    const run = new ForwardRun(this, plan, batch, { temperature, grad: o.grad === true, tokenStats: withStats });
    try {
      await run.forward();
      const read = (t: Tensor | undefined) => (t ? t.toArray() as Promise<Float32Array> : Promise.resolve(new Float32Array(0)));
      const [logprobs, entropy, values] = await Promise.all([read(run.stats?.logprobs), read(run.stats?.entropy), read(run.values)]);
      run.releaseOutputs();
      return new ForwardResult(run, logprobs, entropy, this.groups.valueHead ? values : undefined);
    } catch (error) {
      run.dispose();
      throw error;
    }
  }

  /** A no-grad forward: the old/reference policy's logprobs and entropies. */
  async tokenStats(batch: Batch, options: { temperature?: number } = {}): Promise<TokenStatsResult> {
    const f = await this.forward(batch, { ...options, grad: false });
    return { logprobs: f.logprobs, entropy: f.entropy };
  }

  /** Checks a batch as forward does (R1VError naming `fn` and the field), without running anything. */
  checkBatch(batch: Batch, fn = 'checkBatch'): void {
    this.#checkAlive(fn);
    planBatch(this.config, this.imageContextTokenId, batch, fn);
  }

  // ---- generation -----------------------------------------------------------------------------

  /** An empty KV cache of `slots` sequences of up to maxLen positions each (see kv-cache.ts). */
  createKvCache(slots: number, maxLen: number): KvCache {
    const fn = 'createKvCache';
    this.#checkAlive(fn);
    is.number(slots, 'slots', fn, { integer: true, min: 1 });
    is.number(maxLen, 'maxLen', fn, { integer: true, min: 1, max: this.config.language.maxPositionEmbeddings });
    const lm = this.config.language;
    return new KvCache(this.engine, this.dtype, lm.numHiddenLayers, lm.numKeyValueHeads, lm.headDim, slots, maxLen);
  }

  /**
   * Runs the prompts of a packed batch once (targets are ignored), fills the cache slots of each
   * copy with its sequence's keys and values, and returns the hidden states [copies, H] of each
   * copy's last prompt row, for logits().
   */
  prefill(cache: KvCache, batch: Batch, copies: readonly PrefillCopy[]): Promise<FTensor> {
    this.#checkAlive('prefill');
    return prefill(this, this.imageContextTokenId, cache, batch, copies, 'prefill');
  }

  /** One decode step: tokens[i] enters slot slots[i] (ascending); returns the new rows' hidden states [A, H]. */
  decodeStep(cache: KvCache, slots: Int32Array, tokens: Int32Array): FTensor {
    this.#checkAlive('decodeStep');
    return decodeStep(this, cache, slots, tokens, 'decodeStep');
  }

  /** Final norm and LM head of hidden rows [A, H] (not consumed): logits [A, V]. */
  logits(hidden: FTensor): FTensor {
    this.#checkAlive('logits');
    return logits(this, hidden);
  }

  #checkAlive(fn: string): void {
    if (this.#disposed) throw new R1VError('DISPOSED', `${fn}: the model is disposed`);
    if (this.engine.disposed) throw new R1VError('DISPOSED', `${fn}: the model's engine is disposed`);
  }
}

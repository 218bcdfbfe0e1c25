// VisionLanguageModel: InternViT → pixel-shuffle MLP connector → Qwen2 decoder, trained on
// packed (padding-free) batches with per-token coefficients. The forward scores only the
// positions with a target, through the fused LM head + token statistics op (the [T, V] logits
// are never stored); backward takes dL/dlogprob and dL/dentropy per scored token (the seam the
// RL losses use) and adds gradients into the trainable parameters only.
import { promises as fsp } from 'node:fs';
import path from 'node:path';

import type { Engine } from '../core/engine.js';
import { R1VError } from '../core/errors.js';
import * as ops from '../ops/index.js';
import { openCheckpoint, toFloat32, writeCheckpoint, type SafetensorsWriteTensor } from '../io/safetensors.js';
import type { FloatDType, Tensor } from '../core/tensor.js';
import { parseModelConfig, type ModelConfig } from './config.js';
import {
  accumulateGrad, anyTrainable, disposeTensors, LanguageLayer, linear, linearBackward, norm, normBackward,
  VisionLayer, type NormParams, type NormResult, type TokenRows, type VisionRows,
} from './layers.js';
import {
  findParameter, initializerOf, languagePrefix, lmHeadName, numelOf, parameterSpecs,
  type FTensor, type ModulePart, type Parameter, type ParameterInfo, type ParameterSpec,
} from './parameters.js';

/** A packed batch of sequences (no padding). */
export interface Batch {
  /** Token ids of all sequences, concatenated: [T]. */
  inputIds: Int32Array;
  /** targets[t] is the token position t predicts (usually inputIds[t + 1]); −100 = not scored. [T]. */
  targets: Int32Array;
  /** Sequence offsets [B + 1]: 0, then cumulative lengths, ending at T. */
  cuSeqlens: Int32Array;
  /**
   * Image tiles [tiles, 3, S, S] (normalised pixels), whose embeddings replace, in order, the
   * token embeddings at the `<IMG_CONTEXT>` positions of inputIds (tokensPerTile per tile).
   */
  pixelValues?: Float32Array;
}

export interface ForwardOptions {
  /** Keep what backward needs. Default false. */
  grad?: boolean;
  /** The statistics are of softmax(logits / temperature); finite, > 0. Default 1. */
  temperature?: number;
}

/** Per scored position, in order: log p(target) and the entropy of softmax(logits / T). */
export interface TokenStatsResult {
  logprobs: Float32Array;
  entropy: Float32Array;
}

/** Per-token coefficients of the loss: dL/dlogprob and (optionally) dL/dentropy per scored position. */
export interface BackwardInput {
  dLogprobs: Float32Array;
  dEntropy?: Float32Array;
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
}

export interface CreateOptions extends ModelOptions {
  /** Seed of the random initialisation (same seed, same weights on the same device). Default 0. */
  seed?: number;
}

export interface SaveOptions {
  /** Stored dtype of the weights. Default 'f32' (exact; 'bf16' halves the size, as HF InternVL ships). */
  dtype?: 'f32' | 'bf16';
  /** Largest shard in bytes (default 5e9, Hugging Face's). */
  maxShardBytes?: number;
}

/** What setTrainable accepts: parts on/off (omitted parts keep their state) or a predicate on names. */
export type TrainableSelection = { vision?: boolean; connector?: boolean; language?: boolean } | ((name: string) => boolean);

const CONNECTOR_LN_EPS = 1e-5;  // mlp1.0 is a default nn.LayerNorm
const IGNORE_INDEX = -100;

function isModelConfig(x: unknown): x is ModelConfig {
  return typeof x === 'object' && x !== null && 'raw' in x && 'language' in x && 'modelType' in x;
}

function checkModelOptions(options: ModelOptions, engine: Engine, fn: string): 'f32' | 'bf16' {
  const isCuda = engine.device.kind === 'cuda';
  const dtype = options.dtype ?? (isCuda ? 'bf16' : 'f32');
  if (dtype !== 'f32' && dtype !== 'bf16') throw new R1VError('ARGUMENT', `${fn}: dtype must be 'f32' or 'bf16', got ${String(dtype)}`);
  if (dtype === 'bf16' && !isCuda) throw new R1VError('DTYPE', `${fn}: dtype 'bf16' needs a CUDA engine (the CPU computes in f32)`);
  const id = options.imageContextTokenId;
  if (id !== undefined && !(Number.isInteger(id) && id >= 0)) {
    throw new R1VError('ARGUMENT', `${fn}: imageContextTokenId must be a non-negative integer, got ${String(id)}`);
  }
  return dtype;
}

/** Host-side facts about one batch, checked before any work is queued. */
interface BatchPlan {
  tokens: number;
  tiles: number;
  scored: Int32Array;
  scoredTargets: Int32Array;
  imagePositions: Int32Array;
  positions: Int32Array;
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

  readonly #params: Map<string, Parameter>;
  readonly #visionLayers: VisionLayer[];
  readonly #languageLayers: LanguageLayer[];
  #disposed = false;

  private constructor(engine: Engine, config: ModelConfig, dtype: 'f32' | 'bf16', params: Map<string, Parameter>, options: ModelOptions) {
    this.engine = engine;
    this.config = config;
    this.dtype = dtype;
    this.recompute = options.recompute ?? false;
    this.imageContextTokenId = options.imageContextTokenId ?? config.imageContextTokenId;
    this.#params = params;
    const p = (name: string) => params.get(name)!;
    const maybe = (name: string) => params.get(name);
    const v = config.vision;
    this.#visionLayers = [];
    if (v) {
      for (let i = 0; i < v.numHiddenLayers; i++) {
        const l = `vision_model.encoder.layers.${i}.`;
        const normOf = (n: string): NormParams => ({ weight: p(`${l}${n}.weight`), bias: maybe(`${l}${n}.bias`), eps: v.layerNormEps });
        this.#visionLayers.push(new VisionLayer({
          norm1: normOf('norm1'),
          qkv: { weight: p(`${l}attn.qkv.weight`), bias: maybe(`${l}attn.qkv.bias`) },
          qNorm: v.qkNormalization ? { weight: p(`${l}attn.q_norm.weight`), eps: v.layerNormEps } : undefined,
          kNorm: v.qkNormalization ? { weight: p(`${l}attn.k_norm.weight`), eps: v.layerNormEps } : undefined,
          proj: { weight: p(`${l}attn.proj.weight`), bias: p(`${l}attn.proj.bias`) },
          norm2: normOf('norm2'),
          fc1: { weight: p(`${l}mlp.fc1.weight`), bias: p(`${l}mlp.fc1.bias`) },
          fc2: { weight: p(`${l}mlp.fc2.weight`), bias: p(`${l}mlp.fc2.bias`) },
          ls1: p(`${l}ls1`),
          ls2: p(`${l}ls2`),
        }, v.numAttentionHeads, v.headDim));
      }
    }
    const lm = config.language, m = `${languagePrefix(config)}model.`;
    this.#languageLayers = [];
    for (let i = 0; i < lm.numHiddenLayers; i++) {
      const l = `${m}layers.${i}.`;
      const proj = (n: string, bias: boolean) => ({ weight: p(`${l}${n}.weight`), bias: bias ? p(`${l}${n}.bias`) : undefined });
      this.#languageLayers.push(new LanguageLayer({
        inputNorm: { weight: p(`${l}input_layernorm.weight`), eps: lm.rmsNormEps },
        q: proj('self_attn.q_proj', true),
        k: proj('self_attn.k_proj', true),
        v: proj('self_attn.v_proj', true),
        o: proj('self_attn.o_proj', false),
        postNorm: { weight: p(`${l}post_attention_layernorm.weight`), eps: lm.rmsNormEps },
        gate: proj('mlp.gate_proj', false),
        up: proj('mlp.up_proj', false),
        down: proj('mlp.down_proj', false),
      }, lm.numAttentionHeads, lm.numKeyValueHeads, lm.headDim, lm.ropeTheta));
    }
  }

  // ---- construction, loading, saving --------------------------------------------------------

  /**
   * A randomly initialised model (Hugging Face-style init, see parameters.ts) from a config in
   * Hugging Face form (InternVLChatConfig or Qwen2Config JSON) or an already parsed ModelConfig.
   * Every parameter is trainable.
   */
  static create(engine: Engine, config: unknown, options: CreateOptions = {}): VisionLanguageModel {
    const fn = 'VisionLanguageModel.create';
    const dtype = checkModelOptions(options, engine, fn);
    const seed = options.seed ?? 0;
    if (!Number.isSafeInteger(seed) || seed < 0) throw new R1VError('ARGUMENT', `${fn}: seed must be a non-negative safe integer, got ${String(seed)}`);
    const parsed = isModelConfig(config) ? config : parseModelConfig(config, { source: fn, ...(options.warn ? { warn: options.warn } : {}) });
    const params = new Map<string, Parameter>();
    parameterSpecs(parsed).forEach((spec, i) => {
      const init = initializerOf(spec, parsed);
      const shape = [...spec.shape];
      let master: Tensor<'f32'>;
      if ('constant' in init) {
        master = engine.full(shape, init.constant);
      } else {
        // Each parameter gets its own stream of the seeded generator: the values do not depend on the others.
        const unit = engine.randn(shape, { seed: seed * 65_536 + i });
        master = ops.scale(unit, init.std);
        unit.dispose();
      }
      params.set(spec.name, makeParameter(spec, master, dtype));
    });
    return new VisionLanguageModel(engine, parsed, dtype, params, options);
  }

  /**
   * Loads a Hugging Face model directory: config.json plus model.safetensors or a sharded
   * model.safetensors.index.json, with InternVL names (or plain Qwen2 names for a text-only
   * model). Tensors are read one at a time (f32, bf16 or f16). Missing, unexpected or wrong-shaped
   * tensors fail with one R1VError('IO') listing them all, before any weight is read.
   */
  static async load(engine: Engine, dir: string, options: ModelOptions = {}): Promise<VisionLanguageModel> {
    const fn = 'VisionLanguageModel.load';
    const dtype = checkModelOptions(options, engine, fn);
    const configPath = path.join(dir, 'config.json');
    let json: unknown;
    try {
      json = JSON.parse(await fsp.readFile(configPath, 'utf8'));
    } catch (error) {
      throw new R1VError('IO', `${fn}: cannot read ${configPath}: ${(error as Error).message}`, { cause: error });
    }
    const warn = options.warn ?? ((m: string) => console.warn(m));
    const config = parseModelConfig(json, { source: configPath, warn });
    const specs = parameterSpecs(config);
    await using checkpoint = await openCheckpoint(dir);
    const expected = new Map(specs.map((s) => [s.name, s]));
    const names = new Set(checkpoint.names());
    const problems: string[] = [];
    const ignored: string[] = [];
    for (const spec of specs) {
      if (!names.has(spec.name)) {
        problems.push(`missing ${spec.name} ${JSON.stringify(spec.shape)}`);
        continue;
      }
      const entry = checkpoint.entry(spec.name);
      if (entry.shape.length !== spec.shape.length || entry.shape.some((d, i) => d !== spec.shape[i])) {
        problems.push(`${spec.name} has shape ${JSON.stringify(entry.shape)}, the config needs ${JSON.stringify(spec.shape)}`);
      } else if (!['F32', 'BF16', 'F16', 'F64'].includes(entry.dtype)) {
        problems.push(`${spec.name} has dtype ${entry.dtype} (not a float)`);
      }
    }
    // A tied model's lm_head copy (some exports write it) is the embedding table again: skip it.
    const tiedHead = config.language.tieWordEmbeddings ? `${languagePrefix(config)}lm_head.weight` : undefined;
    for (const name of names) {
      if (expected.has(name)) continue;
      if (name === tiedHead) ignored.push(name);
      else problems.push(`unexpected ${name}`);
    }
    if (problems.length > 0) {
      throw new R1VError('IO', `${fn}(${dir}): the checkpoint does not match its config (${problems.length} problems):\n  ${problems.join('\n  ')}`);
    }
    for (const name of ignored) warn(`${fn}(${dir}): ignoring ${name} (the embeddings are tied)`);
    const params = new Map<string, Parameter>();
    try {
      for (const spec of specs) {
        const data = toFloat32(await checkpoint.readTensor(spec.name));
        params.set(spec.name, makeParameter(spec, engine.tensor(data, [...spec.shape]), dtype));
      }
    } catch (error) {
      for (const p of params.values()) disposeParameter(p);
      throw error;
    }
    return new VisionLanguageModel(engine, config, dtype, params, options);
  }

  /**
   * Writes a Hugging Face directory: config.json (the config as given) and the weights under
   * their HF names (f32 masters when the model has them), streamed tensor by tensor, each file
   * written atomically. A tied LM head is not written (HF ties it back on load).
   */
  async save(dir: string, options: SaveOptions = {}): Promise<void> {
    const fn = 'VisionLanguageModel.save';
    this.#checkAlive(fn);
    const stored = options.dtype ?? 'f32';
    if (stored !== 'f32' && stored !== 'bf16') throw new R1VError('ARGUMENT', `${fn}: dtype must be 'f32' or 'bf16', got ${String(stored)}`);
    await this.engine.synchronize();
    const tensors: SafetensorsWriteTensor[] = [...this.#params.values()].map((p) => ({
      name: p.name,
      dtype: stored === 'f32' ? 'F32' : 'BF16',
      shape: p.shape,
      data: () => (p.master ?? p.value).toArray() as Promise<Float32Array>,
    }));
    await fsp.mkdir(dir, { recursive: true });
    await writeCheckpoint(dir, tensors, { metadata: { format: 'pt' }, ...(options.maxShardBytes ? { maxShardBytes: options.maxShardBytes } : {}) });
    const configPath = path.join(dir, 'config.json');
    try {
      await fsp.writeFile(`${configPath}.tmp`, `${JSON.stringify(this.config.raw, null, 2)}\n`);
      await fsp.rename(`${configPath}.tmp`, configPath);
    } catch (error) {
      throw new R1VError('IO', `${fn}: writing ${configPath} failed: ${(error as Error).message}`, { cause: error });
    }
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
        if (!['vision', 'connector', 'language'].includes(k)) throw new R1VError('ARGUMENT', `${fn}: unknown part '${k}' (vision, connector, language)`);
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
    const temperature = checkForwardOptions(options, fn);
    const plan = this.#planBatch(batch, fn);
    const run = new ForwardRun(this, plan, batch, temperature, options.grad === true);
    try {
      await run.forward();
      const [logprobs, entropy] = await Promise.all([run.stats!.logprobs.toArray(), run.stats!.entropy.toArray()]);
      run.stats!.logprobs.dispose();
      run.stats!.entropy.dispose();
      return new ForwardResult(run, logprobs as Float32Array, entropy as Float32Array);
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

  #checkAlive(fn: string): void {
    if (this.#disposed) throw new R1VError('DISPOSED', `${fn}: the model is disposed`);
    if (this.engine.disposed) throw new R1VError('DISPOSED', `${fn}: the model's engine is disposed`);
  }

  /** Checks a batch on the host and derives positions, scored rows and image rows. */
  #planBatch(batch: Batch, fn: string): BatchPlan {
    if (typeof batch !== 'object' || batch === null) throw new R1VError('ARGUMENT', `${fn}: batch must be an object`);
    const { inputIds, targets, cuSeqlens, pixelValues } = batch;
    for (const [name, value] of [['inputIds', inputIds], ['targets', targets], ['cuSeqlens', cuSeqlens]] as const) {
      if (!(value instanceof Int32Array)) throw new R1VError('ARGUMENT', `${fn}: batch.${name} must be an Int32Array`);
    }
    const tokens = inputIds.length;
    if (targets.length !== tokens) {
      throw new R1VError('SHAPE', `${fn}: batch.targets has ${targets.length} entries but batch.inputIds has ${tokens}`);
    }
    if (cuSeqlens.length < 2 || cuSeqlens[0] !== 0 || cuSeqlens[cuSeqlens.length - 1] !== tokens) {
      throw new R1VError('SHAPE', `${fn}: batch.cuSeqlens must start at 0 and end at inputIds.length (${tokens}), got [${Array.from(cuSeqlens.slice(0, 6)).join(', ')}${cuSeqlens.length > 6 ? ', ...' : ''}]`);
    }
    const lm = this.config.language;
    const positions = new Int32Array(tokens);
    for (let b = 0; b + 1 < cuSeqlens.length; b++) {
      const start = cuSeqlens[b]!, end = cuSeqlens[b + 1]!;
      if (end < start) throw new R1VError('SHAPE', `${fn}: batch.cuSeqlens decreases at [${b + 1}] (${start} → ${end})`);
      if (end - start > lm.maxPositionEmbeddings) {
        throw new R1VError('SHAPE', `${fn}: sequence ${b} has ${end - start} tokens, more than max_position_embeddings (${lm.maxPositionEmbeddings})`);
      }
      for (let t = start; t < end; t++) positions[t] = t - start;
    }
    const scoredList: number[] = [];
    for (let t = 0; t < tokens; t++) {
      const id = inputIds[t]!, target = targets[t]!;
      if (id < 0 || id >= lm.vocabSize) throw new R1VError('ARGUMENT', `${fn}: batch.inputIds[${t}] = ${id} is outside [0, ${lm.vocabSize})`);
      if (target === IGNORE_INDEX) continue;
      if (target < 0 || target >= lm.vocabSize) {
        throw new R1VError('ARGUMENT', `${fn}: batch.targets[${t}] = ${target} is outside [0, ${lm.vocabSize}) (use ${IGNORE_INDEX} for unscored positions)`);
      }
      scoredList.push(t);
    }
    const scored = Int32Array.from(scoredList);
    const scoredTargets = Int32Array.from(scoredList, (t) => targets[t]!);
    const imageId = this.imageContextTokenId;
    const imageList: number[] = [];
    if (imageId !== undefined) for (let t = 0; t < tokens; t++) if (inputIds[t] === imageId) imageList.push(t);
    let tiles = 0;
    if (pixelValues !== undefined) {
      const v = this.config.vision;
      if (!v) throw new R1VError('ARGUMENT', `${fn}: batch.pixelValues given, but this is a text-only model`);
      if (!(pixelValues instanceof Float32Array)) throw new R1VError('ARGUMENT', `${fn}: batch.pixelValues must be a Float32Array`);
      const perTile = v.numChannels * v.imageSize * v.imageSize;
      if (pixelValues.length === 0 || pixelValues.length % perTile !== 0) {
        throw new R1VError('SHAPE', `${fn}: batch.pixelValues has ${pixelValues.length} values, not a positive multiple of ${v.numChannels}·${v.imageSize}·${v.imageSize} = ${perTile} (one tile)`);
      }
      if (imageId === undefined) {
        throw new R1VError('CONFIG', `${fn}: the <IMG_CONTEXT> token id is unknown: pass imageContextTokenId when creating or loading the model (the tokenizer has it)`);
      }
      tiles = pixelValues.length / perTile;
    }
    const expected = tiles * (this.config.connector?.tokensPerTile ?? 0);
    if (imageList.length !== expected) {
      throw new R1VError('SHAPE', `${fn}: batch.inputIds has ${imageList.length} <IMG_CONTEXT> tokens (id ${imageId}) but batch.pixelValues has ${tiles} tiles × ${this.config.connector?.tokensPerTile ?? 0} tokens per tile = ${expected}`);
    }
    return { tokens, tiles, scored, scoredTargets, imagePositions: Int32Array.from(imageList), positions };
  }

  /** @internal Checks a batch as forward does (R1VError naming `fn`), without running anything. */
  checkBatch(batch: Batch, fn: string): void {
    this.#checkAlive(fn);
    this.#planBatch(batch, fn);
  }

  /**
   * @internal For generation: checks a prompt batch (targets may all be −100) and returns its
   * token embeddings [T, H] (image rows from the vision tower and connector) and per-row positions.
   */
  async embedPrompts(batch: Batch, fn: string): Promise<{ x: FTensor; positions: Int32Array; tokens: number }> {
    this.#checkAlive(fn);
    const plan = this.#planBatch(batch, fn);
    const run = new ForwardRun(this, plan, batch, 1, false);
    try {
      return { x: await run.embed(), positions: plan.positions, tokens: plan.tokens };
    } finally {
      run.dispose();
    }
  }

  /** @internal */
  get visionLayers(): readonly VisionLayer[] {
    return this.#visionLayers;
  }

  /** @internal */
  get languageLayers(): readonly LanguageLayer[] {
    return this.#languageLayers;
  }

  /** @internal */
  param(name: string): Parameter {
    return this.#params.get(name)!;
  }

  /** @internal */
  maybeParam(name: string): Parameter | undefined {
    return this.#params.get(name);
  }
}

function checkForwardOptions(options: ForwardOptions, fn: string): number {
  if (typeof options !== 'object' || options === null) throw new R1VError('ARGUMENT', `${fn}: options must be an object`);
  for (const k of Object.keys(options)) {
    if (k !== 'grad' && k !== 'temperature') throw new R1VError('ARGUMENT', `${fn}: unknown option '${k}' (grad, temperature)`);
  }
  const t = options.temperature ?? 1;
  if (typeof t !== 'number' || !Number.isFinite(t) || t <= 0) throw new R1VError('ARGUMENT', `${fn}: temperature must be a finite number > 0, got ${String(t)}`);
  return t;
}

function makeParameter(spec: ParameterSpec, master: Tensor<'f32'>, dtype: 'f32' | 'bf16'): Parameter {
  if (dtype === 'f32') return { ...spec, value: master, master: undefined, grad: undefined, trainable: true };
  const value = ops.cast(master, 'bf16');
  return { ...spec, value, master, grad: undefined, trainable: true };
}

function disposeParameter(p: Parameter): void {
  p.value.dispose();
  p.master?.dispose();
  p.grad?.dispose();
  p.grad = undefined;
}

/** The outcome of forward(): the statistics, and backward() when it ran with { grad: true }. */
export class ForwardResult implements TokenStatsResult {
  #run: ForwardRun | undefined;

  /** @internal */
  constructor(run: ForwardRun, readonly logprobs: Float32Array, readonly entropy: Float32Array) {
    this.#run = run.grad ? run : undefined;
    if (!run.grad) run.dispose();
  }

  /**
   * Adds to every trainable parameter's gradient the gradient of L, where dLogprobs[i] = ∂L/∂logprobs[i]
   * and dEntropy[i] = ∂L/∂entropy[i] for the scored positions, in order. Once per forward; frees the
   * kept activations.
   */
  async backward(input: BackwardInput): Promise<void> {
    const fn = 'backward';
    const run = this.#run;
    if (!run) throw new R1VError('ARGUMENT', `${fn}: this forward ran without { grad: true }, or backward already ran`);
    if (typeof input !== 'object' || input === null) throw new R1VError('ARGUMENT', `${fn}: pass { dLogprobs, dEntropy? }`);
    const n = this.logprobs.length;
    for (const key of Object.keys(input)) {
      if (key !== 'dLogprobs' && key !== 'dEntropy') throw new R1VError('ARGUMENT', `${fn}: unknown field '${key}' (dLogprobs, dEntropy)`);
    }
    for (const [name, value] of [['dLogprobs', input.dLogprobs], ['dEntropy', input.dEntropy]] as const) {
      if (value === undefined && name === 'dEntropy') continue;
      if (!(value instanceof Float32Array)) throw new R1VError('ARGUMENT', `${fn}: ${name} must be a Float32Array`);
      if (value.length !== n) throw new R1VError('SHAPE', `${fn}: ${name} has ${value.length} entries but the forward scored ${n} positions`);
    }
    this.#run = undefined;
    try {
      await run.backward(input.dLogprobs, input.dEntropy ?? new Float32Array(n));
      await run.model.engine.synchronize();
    } finally {
      run.dispose();
    }
  }

  /** Frees the activations kept for backward (when backward will not be called). */
  dispose(): void {
    this.#run?.dispose();
    this.#run = undefined;
  }
}

/** What one forward kept for its backward, and the order of the work. */
class ForwardRun {
  stats: { logprobs: Tensor<'f32'>; entropy: Tensor<'f32'> } | undefined;
  // Tensors owned by this run (indices, saved activations), freed by dispose().
  readonly #owned: Tensor[] = [];
  #visionRows: VisionRows | undefined;
  #tokenRows: TokenRows | undefined;
  #visionInput: { patches: FTensor; x: FTensor } | undefined;
  #visionSaved: Array<{ x: FTensor; saved?: object }> = [];
  #features: FTensor | undefined;  // connector input [tiles, h, w, C]
  #embedInput: Tensor<'i32'> | undefined;
  #languageSaved: Array<{ x: FTensor; saved?: object }> = [];
  #head: { x: FTensor; n: NormResult; hidden: FTensor } | undefined;
  #scoredRows: Tensor<'i32'> | undefined;
  #scoredTargets: Tensor<'i32'> | undefined;
  #imageRows: Tensor<'i32'> | undefined;
  readonly #needs: Needs;
  readonly #fence: Fence;

  constructor(
    readonly model: VisionLanguageModel,
    readonly plan: BatchPlan,
    readonly batch: Batch,
    readonly temperature: number,
    readonly grad: boolean,
  ) {
    this.#needs = needsOf(model, plan.tiles > 0, grad);
    this.#fence = new Fence(model.engine);
  }

  #own<T extends Tensor>(t: T): T {
    this.#owned.push(t);
    return t;
  }

  /** An i32 index tensor owned by this run. */
  #indices(values: Int32Array): Tensor<'i32'> {
    return this.#own(this.model.engine.tensor<'i32'>(values, [values.length]));
  }

  /** Token embeddings [T, H] with the image rows replaced by the connector's output. */
  async embed(): Promise<FTensor> {
    const m = this.model, e = m.engine, cfg = m.config, plan = this.plan, needs = this.#needs;
    const lm = cfg.language;
    // ---- vision tower and connector → image embeddings
    let imageEmbeds: FTensor | undefined;
    if (plan.tiles > 0) {
      const v = cfg.vision!, side = v.imageSize / v.patchSize, patches = side * side, perTile = patches + 1;
      const rows = plan.tiles * perTile;
      const qRows = new Int32Array(rows), kRows = new Int32Array(rows), vRows = new Int32Array(rows);
      for (let r = 0; r < rows; r++) [qRows[r], kRows[r], vRows[r]] = [3 * r, 3 * r + 1, 3 * r + 2];
      this.#visionRows = {
        rows,
        cuSeqlens: Int32Array.from({ length: plan.tiles + 1 }, (_, i) => i * perTile),
        qRows: this.#indices(qRows),
        kRows: this.#indices(kRows),
        vRows: this.#indices(vRows),
      };
      let x = this.#visionEmbeddings(v.numChannels, v.imageSize, v.patchSize, v.hiddenSize, patches);
      for (const [i, layer] of m.visionLayers.entries()) {
        const save = needs.visionLayer[i]!;
        const r = layer.forward(x, this.#visionRows!, save && !m.recompute);
        if (save) this.#visionSaved[i] = { x, ...(r.saved ? { saved: r.saved } : {}) };
        else x.dispose();
        x = r.y;
        await this.#fence.pass(x);
      }
      // drop the CLS rows → [tiles, side, side, C]
      const patchRows = this.#patchRows(plan.tiles, patches);
      const flat = ops.gatherRows(x, patchRows);
      x.dispose();
      const features = ops.reshape(flat, [plan.tiles, side, side, v.hiddenSize]);
      flat.dispose();
      const embeds = ops.connector(features, connectorParams(m), { eps: CONNECTOR_LN_EPS });
      if (needs.connector) this.#features = this.#own(features);
      else features.dispose();
      imageEmbeds = ops.reshape(embeds, [plan.tiles * cfg.connector!.tokensPerTile, lm.hiddenSize]);
      embeds.dispose();
    }
    // ---- token embeddings, image rows overwritten
    const table = m.param(`${languagePrefix(cfg)}model.embed_tokens.weight`);
    const ids = this.#indices(this.batch.inputIds);
    let x = ops.embedding(ids, table.value);
    if (imageEmbeds) {
      this.#imageRows = this.#indices(plan.imagePositions);
      const merged = ops.scatterRows(x, this.#imageRows, imageEmbeds);
      x.dispose();
      imageEmbeds.dispose();
      x = merged;
    }
    this.#embedInput = ids;
    return x;
  }

  async forward(): Promise<void> {
    const m = this.model, cfg = m.config, plan = this.plan, needs = this.#needs;
    const lm = cfg.language;
    let x = await this.embed();
    this.#tokenRows = { rows: plan.tokens, cuSeqlens: this.batch.cuSeqlens, positions: this.#indices(plan.positions) };
    for (const [i, layer] of m.languageLayers.entries()) {
      const save = needs.languageLayer[i]!;
      const r = layer.forward(x, this.#tokenRows!, save && !m.recompute);
      if (save) this.#languageSaved[i] = { x, ...(r.saved ? { saved: r.saved } : {}) };
      else x.dispose();
      x = r.y;
      await this.#fence.pass(x);
    }
    // ---- final norm, scored rows, fused LM head + statistics
    const n = norm(x, { weight: m.param(`${languagePrefix(cfg)}model.norm.weight`), eps: lm.rmsNormEps });
    this.#scoredRows = this.#indices(plan.scored);
    this.#scoredTargets = this.#indices(plan.scoredTargets);
    const hidden = ops.gatherRows(n.y, this.#scoredRows);
    this.stats = ops.linearTokenStats(hidden, m.param(lmHeadName(cfg)).value, this.#scoredTargets, { temperature: this.temperature });
    if (needs.head) {
      this.#head = { x, n, hidden };
    } else {
      x.dispose();
      n.y.dispose();
      n.rstd.dispose();
      hidden.dispose();
    }
  }

  /** Row indices of the patch tokens (every row but each tile's first, the CLS). */
  #patchRows(tiles: number, patches: number): Tensor<'i32'> {
    const idx = new Int32Array(tiles * patches);
    for (let t = 0; t < tiles; t++) for (let i = 0; i < patches; i++) idx[t * patches + i] = t * (patches + 1) + 1 + i;
    return this.#indices(idx);
  }

  /** Patch embedding (conv as GEMM) + CLS + position embeddings → [tiles·(1+P), C]. */
  #visionEmbeddings(channels: number, size: number, patch: number, width: number, patches: number): FTensor {
    const m = this.model, e = m.engine, tiles = this.plan.tiles;
    const pixels = e.tensor(this.batch.pixelValues!, [tiles, channels, size, size], { dtype: m.dtype });
    const cut = ops.patchify(pixels, { patch });
    pixels.dispose();
    const patchesIn = ops.reshape(cut, [tiles * patches, channels * patch * patch]);
    cut.dispose();
    const conv = m.param('vision_model.embeddings.patch_embedding.weight');
    const w2 = ops.reshape(conv.value, [width, channels * patch * patch]);
    const embedded = linear(patchesIn, { weight: conv, bias: m.param('vision_model.embeddings.patch_embedding.bias') }, w2);
    w2.dispose();
    const rows = tiles * (patches + 1);
    const cls = ops.reshape(m.param('vision_model.embeddings.class_embedding').value, [1, width]);
    const zeros = e.tensor<'i32'>(new Int32Array(rows), [rows]);
    const base = ops.gatherRows(cls, zeros);
    cls.dispose();
    zeros.dispose();
    const patchRows = this.#patchRows(tiles, patches);
    const merged = ops.scatterRows(base, patchRows, embedded);
    base.dispose();
    embedded.dispose();
    const pos = ops.reshape(m.param('vision_model.embeddings.position_embedding').value, [patches + 1, width]);
    const tiled = ops.reshape(merged, [tiles, patches + 1, width]);
    merged.dispose();
    const withPos = ops.add(tiled, pos);
    tiled.dispose();
    pos.dispose();
    const x = ops.reshape(withPos, [rows, width]);
    withPos.dispose();
    if (this.#needs.visionEmbeddings) this.#visionInput = { patches: this.#own(patchesIn), x };
    else patchesIn.dispose();
    return x;
  }

  async backward(dLogprobs: Float32Array, dEntropy: Float32Array): Promise<void> {
    const m = this.model, e = m.engine, cfg = m.config, plan = this.plan, needs = this.#needs;
    if (!needs.any) return;
    const prefix = languagePrefix(cfg);
    // ---- head
    const head = this.#head!;
    const dl = e.tensor(dLogprobs, [dLogprobs.length]), de = e.tensor(dEntropy, [dEntropy.length]);
    const headParam = m.param(lmHeadName(cfg));
    const g = ops.linearTokenStatsBackward(head.hidden, headParam.value, this.#scoredTargets!, dl, de, { temperature: this.temperature });
    dl.dispose();
    de.dispose();
    head.hidden.dispose();
    accumulateGrad(headParam, g.dWeight);
    let dx: FTensor | undefined;
    if (needs.languageDx[m.languageLayers.length]) {
      const dNormed = ops.scatterAddRows(g.dHidden, this.#scoredRows!, plan.tokens);
      dx = normBackward(head.x, { weight: m.param(`${prefix}model.norm.weight`), eps: cfg.language.rmsNormEps }, head.n, dNormed, true);
      dNormed.dispose();
    } else if (m.param(`${prefix}model.norm.weight`).trainable) {
      const dNormed = ops.scatterAddRows(g.dHidden, this.#scoredRows!, plan.tokens);
      normBackward(head.x, { weight: m.param(`${prefix}model.norm.weight`), eps: cfg.language.rmsNormEps }, head.n, dNormed, false);
      dNormed.dispose();
    }
    g.dHidden.dispose();
    head.x.dispose();
    head.n.y.dispose();
    head.n.rstd.dispose();
    this.#head = undefined;
    // ---- decoder layers, last first
    for (let i = m.languageLayers.length - 1; i >= 0 && dx; i--) {
      const kept = this.#languageSaved[i];
      if (!kept) break;
      const layer = m.languageLayers[i]!;
      const saved = kept.saved ?? layer.forward(kept.x, this.#tokenRows!, true).saved!;
      const before = dx;
      dx = layer.backward(saved as never, before, this.#tokenRows!, needs.languageDx[i]!);
      before.dispose();
      kept.x.dispose();
      this.#languageSaved[i] = undefined as never;
      if (dx) await this.#fence.pass(dx);
    }
    // ---- embeddings: the image rows go to the connector, the rest to the table
    if (dx) {
      const table = m.param(`${prefix}model.embed_tokens.weight`);
      let dImage: FTensor | undefined;
      let dTokens = dx;
      if (this.#imageRows && needs.connector) {
        dImage = ops.gatherRows(dx, this.#imageRows);
        if (table.trainable) {
          const zeros = e.zeros([plan.imagePositions.length, cfg.language.hiddenSize], { dtype: m.dtype });
          dTokens = ops.scatterRows(dx, this.#imageRows, zeros);
          zeros.dispose();
          dx.dispose();
        }
      }
      if (table.trainable) accumulateGrad(table, ops.embeddingBackward(this.#embedInput!, dTokens, cfg.language.vocabSize));
      dTokens.dispose();
      if (dImage) await this.#visionBackward(dImage);
    }
  }

  async #visionBackward(dImage: FTensor): Promise<void> {
    const m = this.model, cfg = m.config, needs = this.#needs, v = cfg.vision!;
    const side = v.imageSize / v.patchSize, patches = side * side;
    const dEmbeds = ops.reshape(dImage, [this.plan.tiles, patches / 4, cfg.language.hiddenSize]);
    dImage.dispose();
    const cp = connectorParams(m);
    const g = ops.connectorBackward(this.#features!, cp, dEmbeds, { eps: CONNECTOR_LN_EPS });
    dEmbeds.dispose();
    const names = ['mlp1.0.weight', 'mlp1.0.bias', 'mlp1.1.weight', 'mlp1.1.bias', 'mlp1.3.weight', 'mlp1.3.bias'];
    [g.dLnWeight, g.dLnBias, g.dW1, g.dB1, g.dW2, g.dB2].forEach((t, i) => accumulateGrad(m.param(names[i]!), t));
    if (!needs.visionDx[m.visionLayers.length]) {
      g.dx.dispose();
      return;
    }
    const dFlat = ops.reshape(g.dx, [this.plan.tiles * patches, v.hiddenSize]);
    g.dx.dispose();
    let dx: FTensor | undefined = ops.scatterAddRows(dFlat, this.#patchRows(this.plan.tiles, patches), this.#visionRows!.rows);
    dFlat.dispose();
    for (let i = m.visionLayers.length - 1; i >= 0 && dx; i--) {
      const kept = this.#visionSaved[i];
      if (!kept) break;
      const layer = m.visionLayers[i]!;
      const saved = kept.saved ?? layer.forward(kept.x, this.#visionRows!, true).saved!;
      const before: FTensor = dx;
      dx = layer.backward(saved as never, before, this.#visionRows!, needs.visionDx[i]!);
      before.dispose();
      if (dx) await this.#fence.pass(dx);
      if (kept.x !== this.#visionInput?.x) kept.x.dispose();
      this.#visionSaved[i] = undefined as never;
    }
    if (dx && this.#visionInput) this.#embeddingsBackward(dx);
    dx?.dispose();
  }

  /** Gradients of the patch embedding, CLS and position embeddings from dX [tiles·(1+P), C]. */
  #embeddingsBackward(dx: FTensor): void {
    const m = this.model, v = m.config.vision!, tiles = this.plan.tiles;
    const side = v.imageSize / v.patchSize, patches = side * side, width = v.hiddenSize;
    const pos = m.param('vision_model.embeddings.position_embedding');
    if (pos.trainable) {
      const perTile = ops.reshape(dx, [tiles, (patches + 1) * width]);
      accumulateGrad(pos, ops.sumRows(perTile));
      perTile.dispose();
    }
    const cls = m.param('vision_model.embeddings.class_embedding');
    if (cls.trainable) {
      const clsIdx = m.engine.tensor<'i32'>(Int32Array.from({ length: tiles }, (_, t) => t * (patches + 1)), [tiles]);
      const rows = ops.gatherRows(dx, clsIdx);
      clsIdx.dispose();
      accumulateGrad(cls, ops.sumRows(rows));
      rows.dispose();
    }
    const conv = m.param('vision_model.embeddings.patch_embedding.weight');
    const bias = m.param('vision_model.embeddings.patch_embedding.bias');
    if (conv.trainable || bias.trainable) {
      const dPatches = ops.gatherRows(dx, this.#patchRows(tiles, patches));
      linearBackward(this.#visionInput!.patches, { weight: conv, bias }, dPatches, false);
      dPatches.dispose();
    }
    this.#visionInput!.x.dispose();
  }

  dispose(): void {
    this.#fence.close();
    for (const t of this.#owned) t.dispose();
    this.#owned.length = 0;
    for (const k of [...this.#visionSaved, ...this.#languageSaved]) {
      if (!k) continue;
      disposeTensors(k.saved);
      k.x.dispose();
    }
    this.#visionSaved = [];
    this.#languageSaved = [];
    this.#visionInput?.x.dispose();
    this.#visionInput = undefined;
    if (this.#head) {
      this.#head.x.dispose();
      this.#head.hidden.dispose();
      this.#head.n.y.dispose();
      this.#head.n.rstd.dispose();
      this.#head = undefined;
    }
    this.stats?.logprobs.dispose();
    this.stats?.entropy.dispose();
  }
}

/**
 * Keeps the JavaScript thread at most one block ahead of the device. Op outputs are allocated
 * when the op is queued and freed once the work that uses them has run, so a thread that queued a
 * whole step ahead would hold every intermediate of the step at once (and activation
 * recomputation would save nothing). After queuing block i, pass() waits until block i − 1 has
 * run (a one-row copy of its output is read back), so the device always has the next block queued.
 */
export class Fence {
  #previous: Promise<unknown> = Promise.resolve(undefined);
  #row0: Tensor<'i32'> | undefined;

  constructor(readonly engine: Engine) {}

  async pass(x: FTensor): Promise<void> {
    this.#row0 ??= this.engine.tensor<'i32'>(new Int32Array(1), [1]);
    const marker = ops.gatherRows(x, this.#row0);
    // Settles with the failure instead of rejecting, so a marker nobody waits for is no unhandled rejection.
    const done = marker.toArray().then(() => undefined, (error: unknown) => error).finally(() => marker.dispose());
    const previous = this.#previous;
    this.#previous = done;
    const failure = await previous;
    if (failure !== undefined) throw failure;
  }

  /** Frees the index (the markers still queued free themselves). */
  close(): void {
    this.#row0?.dispose();
    this.#row0 = undefined;
    this.#previous = Promise.resolve(undefined);
  }
}

function connectorParams(m: VisionLanguageModel): ops.ConnectorParams {
  const p = (n: string) => m.param(n).value;
  return { lnWeight: p('mlp1.0.weight'), lnBias: p('mlp1.0.bias'), w1: p('mlp1.1.weight'), b1: p('mlp1.1.bias'), w2: p('mlp1.3.weight'), b2: p('mlp1.3.bias') };
}

/** Which blocks run backward, which keep activations, and which pass a gradient to their input. */
interface Needs {
  any: boolean;
  head: boolean;
  /** languageDx[i]: layer i (or the head for i = N) must return dX, because something before it trains. */
  languageDx: boolean[];
  languageLayer: boolean[];
  connector: boolean;
  visionDx: boolean[];
  visionLayer: boolean[];
  visionEmbeddings: boolean;
}

function needsOf(m: VisionLanguageModel, images: boolean, grad: boolean): Needs {
  const cfg = m.config, prefix = languagePrefix(cfg);
  const none: Needs = { any: false, head: false, languageDx: [], languageLayer: [], connector: false, visionDx: [], visionLayer: [], visionEmbeddings: false };
  if (!grad) return none;
  const embeddingNames = ['class_embedding', 'patch_embedding.weight', 'patch_embedding.bias', 'position_embedding']
    .map((n) => `vision_model.embeddings.${n}`);
  const visionEmbeddings = images && anyTrainable(embeddingNames.map((n) => m.maybeParam(n)));
  const visionDx: boolean[] = [];
  const visionLayer: boolean[] = [];
  let before = visionEmbeddings;
  m.visionLayers.forEach((layer, i) => {
    visionDx[i] = before;
    const trains = images && anyTrainable(layer.parameters());
    visionLayer[i] = before || trains;
    before ||= trains;
  });
  visionDx[m.visionLayers.length] = before;
  const connectorTrains = images && anyTrainable(['mlp1.0.weight', 'mlp1.0.bias', 'mlp1.1.weight', 'mlp1.1.bias', 'mlp1.3.weight', 'mlp1.3.bias'].map((n) => m.maybeParam(n)));
  const connector = before || connectorTrains;
  before = connector || m.param(`${prefix}model.embed_tokens.weight`).trainable;
  const languageDx: boolean[] = [];
  const languageLayer: boolean[] = [];
  m.languageLayers.forEach((layer, i) => {
    languageDx[i] = before;
    const trains = anyTrainable(layer.parameters());
    languageLayer[i] = before || trains;
    before ||= trains;
  });
  languageDx[m.languageLayers.length] = before;
  const head = before || m.param(`${prefix}model.norm.weight`).trainable || m.param(lmHeadName(cfg)).trainable;
  return { any: head, head, languageDx, languageLayer, connector, visionDx, visionLayer, visionEmbeddings };
}

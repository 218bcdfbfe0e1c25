// The model's parameters as typed groups (one per module: vision embeddings and layers, the
// connector, the decoder layers, the final norm and the head), laid out once from the config.
// The Hugging Face names live here and nowhere else: `modelLayout(config)` builds the groups
// with ParameterSpec leaves (name, shape, part, kind), `parameterSpecs` lists them in checkpoint
// order (vision, connector, language by layer), and `resolveGroups` swaps each spec for the
// device Parameter of that name, so the model's code reaches weights by field, never by name.
import { R1VError } from '../core/errors.js';
import type { FloatDType, Tensor } from '../core/tensor.js';
import type { ModelConfig } from './config.js';

/** A tensor of a float dtype (what parameters, gradients and activations are). */
export type FTensor = Tensor<FloatDType>;

/** Which part of the model a parameter belongs to (what setTrainable switches); 'value' is a critic's value head. */
export type ModulePart = 'vision' | 'connector' | 'language' | 'value';

/**
 * What a parameter is, which sets its initialisation and whether AdamW decays it:
 * matrices and embedding tables decay; norms, biases and layer scales do not.
 */
export type ParameterKind = 'weight' | 'embedding' | 'bias' | 'norm' | 'layerScale';

/** A parameter as the config defines it (no memory). */
export interface ParameterSpec {
  /** The Hugging Face name, e.g. 'language_model.model.layers.0.self_attn.q_proj.weight'. */
  readonly name: string;
  readonly shape: readonly number[];
  readonly part: ModulePart;
  readonly kind: ParameterKind;
}

/** A parameter's public description (VisionLanguageModel.parameters()). */
export interface ParameterInfo {
  readonly name: string;
  readonly shape: readonly number[];
  /** The compute dtype of its device copy ('f32' on the CPU, 'bf16' by default on CUDA). */
  readonly dtype: string;
  readonly trainable: boolean;
  readonly part: ModulePart;
  readonly kind: ParameterKind;
}

/**
 * A parameter's device state. `value` is what the forward reads (compute dtype). With a 16-bit
 * compute dtype a trainable parameter also has an f32 `master` copy that the optimizer updates
 * (then rounds into value). `grad` (compute dtype) is summed over backward calls until zeroGrad.
 */
export interface Parameter extends ParameterSpec {
  value: FTensor;
  master: Tensor<'f32'> | undefined;
  grad: FTensor | undefined;
  trainable: boolean;
}

// ---- the groups; P is ParameterSpec in a layout, Parameter in a live model ----------------

/** y = x·Wᵀ + b with W [out, in]. */
export interface LinearGroup<P = Parameter> {
  weight: P;
  bias?: P | undefined;
}

/** LayerNorm (weight and bias) or RMSNorm (weight only) over the last dim. */
export interface NormGroup<P = Parameter> {
  weight: P;
  bias?: P | undefined;
  eps: number;
}

/** InternViT encoder layer. */
export interface VisionLayerGroup<P = Parameter> {
  norm1: NormGroup<P>;
  qkv: LinearGroup<P>;
  qNorm?: NormGroup<P> | undefined;
  kNorm?: NormGroup<P> | undefined;
  proj: LinearGroup<P>;
  norm2: NormGroup<P>;
  fc1: LinearGroup<P>;
  fc2: LinearGroup<P>;
  ls1: P;
  ls2: P;
}

/** InternViT: patch embedding (a conv weight [C, channels, p, p]), CLS, position embeddings, layers. */
export interface VisionGroup<P = Parameter> {
  classEmbedding: P;
  patchEmbedding: LinearGroup<P>;
  positionEmbedding: P;
  layers: VisionLayerGroup<P>[];
}

/** InternVL's mlp1: LayerNorm(4C) → Linear → GELU → Linear. */
export interface ConnectorGroup<P = Parameter> {
  norm: NormGroup<P>;
  fc1: LinearGroup<P>;
  fc2: LinearGroup<P>;
}

/** Qwen2 decoder layer. */
export interface LanguageLayerGroup<P = Parameter> {
  inputNorm: NormGroup<P>;
  q: LinearGroup<P>;
  k: LinearGroup<P>;
  v: LinearGroup<P>;
  o: LinearGroup<P>;
  postNorm: NormGroup<P>;
  gate: LinearGroup<P>;
  up: LinearGroup<P>;
  down: LinearGroup<P>;
}

/** Qwen2: token embeddings, layers, final RMSNorm, LM head (the embedding table itself when tied). */
export interface LanguageGroup<P = Parameter> {
  embedTokens: P;
  layers: LanguageLayerGroup<P>[];
  norm: NormGroup<P>;
  head: P;
}

export interface ModelGroups<P = Parameter> {
  vision?: VisionGroup<P> | undefined;
  connector?: ConnectorGroup<P> | undefined;
  language: LanguageGroup<P>;
  /** A critic's Linear(H, 1) on the final-norm hidden state (`value_head.weight` [1, H], `value_head.bias` [1]). */
  valueHead?: LinearGroup<P> | undefined;
}

/** What a model has beyond its config. */
export interface LayoutOptions {
  /** A value head (a critic for PPO with GAE). */
  valueHead?: boolean;
}

/** mlp1.0 is a default nn.LayerNorm. */
const CONNECTOR_LN_EPS = 1e-5;

/** Name prefixes of the language model: inside an InternVL checkpoint, or a plain Qwen2 one. */
function languagePrefix(config: ModelConfig): string {
  return config.modelType === 'internvl_chat' ? 'language_model.' : '';
}

/** The parameter groups of a config, with specs as leaves, in checkpoint order. */
export function modelLayout(config: ModelConfig, options: LayoutOptions = {}): ModelGroups<ParameterSpec> {
  const spec = (part: ModulePart, kind: ParameterKind, name: string, shape: number[]): ParameterSpec => ({ name, shape, part, kind });
  const linear = (part: ModulePart, name: string, out: number, inp: number, bias: boolean): LinearGroup<ParameterSpec> => ({
    weight: spec(part, 'weight', `${name}.weight`, [out, inp]),
    ...(bias ? { bias: spec(part, 'bias', `${name}.bias`, [out]) } : {}),
  });
  const norm = (part: ModulePart, name: string, width: number, bias: boolean, eps: number): NormGroup<ParameterSpec> => ({
    weight: spec(part, 'norm', `${name}.weight`, [width]),
    ...(bias ? { bias: spec(part, 'bias', `${name}.bias`, [width]) } : {}),
    eps,
  });
  let vision: VisionGroup<ParameterSpec> | undefined;
  const v = config.vision;
  if (v) {
    const c = v.hiddenSize, p = v.patchSize, layerNorm = v.normType === 'layer_norm', eps = v.layerNormEps, e = 'vision_model.embeddings.';
    vision = {
      classEmbedding: spec('vision', 'embedding', `${e}class_embedding`, [1, 1, c]),
      patchEmbedding: {
        weight: spec('vision', 'weight', `${e}patch_embedding.weight`, [c, v.numChannels, p, p]),
        bias: spec('vision', 'bias', `${e}patch_embedding.bias`, [c]),
      },
      positionEmbedding: spec('vision', 'embedding', `${e}position_embedding`, [1, v.numPatches + 1, c]),
      layers: Array.from({ length: v.numHiddenLayers }, (_, i) => {
        const l = `vision_model.encoder.layers.${i}.`;
        return {
          norm1: norm('vision', `${l}norm1`, c, layerNorm, eps),
          qkv: linear('vision', `${l}attn.qkv`, 3 * c, c, v.qkvBias),
          qNorm: v.qkNormalization ? norm('vision', `${l}attn.q_norm`, c, false, eps) : undefined,
          kNorm: v.qkNormalization ? norm('vision', `${l}attn.k_norm`, c, false, eps) : undefined,
          proj: linear('vision', `${l}attn.proj`, c, c, true),
          norm2: norm('vision', `${l}norm2`, c, layerNorm, eps),
          fc1: linear('vision', `${l}mlp.fc1`, v.intermediateSize, c, true),
          fc2: linear('vision', `${l}mlp.fc2`, c, v.intermediateSize, true),
          ls1: spec('vision', 'layerScale', `${l}ls1`, [c]),
          ls2: spec('vision', 'layerScale', `${l}ls2`, [c]),
        };
      }),
    };
  }
  const k = config.connector;
  const connector = k && {
    norm: norm('connector', 'mlp1.0', k.inputSize, true, CONNECTOR_LN_EPS),
    fc1: linear('connector', 'mlp1.1', k.outputSize, k.inputSize, true),
    fc2: linear('connector', 'mlp1.3', k.outputSize, k.outputSize, true),
  };
  const lm = config.language, h = lm.hiddenSize, d = lm.headDim, prefix = languagePrefix(config), m = `${prefix}model.`;
  const embedTokens = spec('language', 'embedding', `${m}embed_tokens.weight`, [lm.vocabSize, h]);
  const language: LanguageGroup<ParameterSpec> = {
    embedTokens,
    layers: Array.from({ length: lm.numHiddenLayers }, (_, i) => {
      const l = `${m}layers.${i}.`;
      return {
        inputNorm: norm('language', `${l}input_layernorm`, h, false, lm.rmsNormEps),
        q: linear('language', `${l}self_attn.q_proj`, lm.numAttentionHeads * d, h, true),
        k: linear('language', `${l}self_attn.k_proj`, lm.numKeyValueHeads * d, h, true),
        v: linear('language', `${l}self_attn.v_proj`, lm.numKeyValueHeads * d, h, true),
        o: linear('language', `${l}self_attn.o_proj`, h, lm.numAttentionHeads * d, false),
        postNorm: norm('language', `${l}post_attention_layernorm`, h, false, lm.rmsNormEps),
        gate: linear('language', `${l}mlp.gate_proj`, lm.intermediateSize, h, false),
        up: linear('language', `${l}mlp.up_proj`, lm.intermediateSize, h, false),
        down: linear('language', `${l}mlp.down_proj`, h, lm.intermediateSize, false),
      };
    }),
    norm: norm('language', `${m}norm`, h, false, lm.rmsNormEps),
    head: lm.tieWordEmbeddings ? embedTokens : spec('language', 'weight', `${prefix}lm_head.weight`, [lm.vocabSize, h]),
  };
  const valueHead = options.valueHead ? linear('value', 'value_head', 1, h, true) : undefined;
  return { vision, connector, language, valueHead };
}

function isSpec(x: unknown): x is ParameterSpec {
  return typeof x === 'object' && x !== null && 'name' in x && 'shape' in x && 'kind' in x;
}

/** Every leaf of a group (or of any nesting of groups and arrays), in order, each once. */
export function leavesOf<P extends ParameterSpec>(group: unknown): P[] {
  const out: P[] = [];
  const seen = new Set<unknown>();
  const walk = (x: unknown): void => {
    if (isSpec(x)) {
      if (!seen.has(x)) out.push(x as P);
      seen.add(x);
    } else if (Array.isArray(x)) {
      x.forEach(walk);
    } else if (typeof x === 'object' && x !== null) {
      Object.values(x).forEach(walk);
    }
  };
  walk(group);
  return out;
}

/**
 * Names a checkpoint may hold beyond the parameters, to be skipped: the lm_head copy some
 * exporters write for a model whose head is tied to the embedding table.
 */
export function redundantNames(config: ModelConfig, options: LayoutOptions = {}): Map<string, string> {
  const names = new Map<string, string>();
  if (config.language.tieWordEmbeddings) names.set(`${languagePrefix(config)}lm_head.weight`, 'the embeddings are tied');
  if (!options.valueHead) {
    for (const n of ['value_head.weight', 'value_head.bias']) names.set(n, 'a critic\'s value head; load with { valueHead: true } to keep it');
  }
  return names;
}

/** Every parameter of the model, in checkpoint order (a tied head is the embedding table, listed once). */
export function parameterSpecs(config: ModelConfig, options: LayoutOptions = {}): ParameterSpec[] {
  return leavesOf(modelLayout(config, options));
}

/** The layout's groups with each spec replaced by the live parameter of its name. */
export function resolveGroups(layout: ModelGroups<ParameterSpec>, byName: ReadonlyMap<string, Parameter>): ModelGroups {
  const map = (x: unknown): unknown => {
    if (isSpec(x)) return byName.get(x.name)!;
    if (Array.isArray(x)) return x.map(map);
    if (typeof x === 'object' && x !== null) return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, map(v)]));
    return x;
  };
  return map(layout) as ModelGroups;
}

/** Whether AdamW applies weight decay to a parameter of this kind. */
export function decays(kind: ParameterKind): boolean {
  return kind === 'weight' || kind === 'embedding';
}

/** Initial values of a randomly initialised parameter: constant, or normal with a standard deviation. */
export type Initializer = { constant: number } | { std: number };

/**
 * Hugging Face-style initialisation: matrices and embeddings N(0, 0.02²), biases 0, norm
 * weights 1, layer scales at the vision config's initializer_factor.
 */
export function initializerOf(spec: ParameterSpec, config: ModelConfig): Initializer {
  switch (spec.kind) {
    case 'weight':
    case 'embedding':
      return { std: 0.02 };
    case 'bias':
      return { constant: 0 };
    case 'norm':
      return { constant: 1 };
    case 'layerScale':
      return { constant: config.vision?.initializerFactor ?? 1 };
  }
}

/** Product of a shape's dims. */
export function numelOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Whether any of the parameters is trainable. */
export function anyTrainable(group: unknown): boolean {
  return leavesOf<Parameter>(group).some((p) => p.trainable);
}

/** Looks a parameter up by name; R1VError('ARGUMENT') listing a few names when unknown. */
export function findParameter(params: ReadonlyMap<string, Parameter>, name: string, fn: string): Parameter {
  const p = params.get(name);
  if (!p) {
    const some = [...params.keys()].slice(0, 4).join(', ');
    throw new R1VError('ARGUMENT', `${fn}: no parameter named '${name}' (names look like: ${some}, ...)`);
  }
  return p;
}

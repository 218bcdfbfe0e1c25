// The model's parameters: their Hugging Face names and shapes (derived from the config alone,
// so a checkpoint can be checked against them before anything is read), how each is initialised,
// and the device tensors that hold them with their gradients.
import { R1VError } from '../core/errors.js';
import type { FloatDType, Tensor } from '../core/tensor.js';
import type { ModelConfig } from './config.js';

/** A tensor of a float dtype (what parameters, gradients and activations are). */
export type FTensor = Tensor<FloatDType>;

/** Which part of the model a parameter belongs to (what setTrainable switches). */
export type ModulePart = 'vision' | 'connector' | 'language';

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

/** Whether AdamW applies weight decay to a parameter of this kind. */
export function decays(kind: ParameterKind): boolean {
  return kind === 'weight' || kind === 'embedding';
}

/** Name prefixes of the language model: inside an InternVL checkpoint, or a plain Qwen2 one. */
export function languagePrefix(config: ModelConfig): string {
  return config.modelType === 'internvl_chat' ? 'language_model.' : '';
}

/** Every parameter of the model, in a fixed order (vision, connector, language by layer). */
export function parameterSpecs(config: ModelConfig): ParameterSpec[] {
  const specs: ParameterSpec[] = [];
  const add = (part: ModulePart, kind: ParameterKind, name: string, shape: number[]) => {
    specs.push({ name, shape, part, kind });
  };
  const v = config.vision;
  if (v) {
    const c = v.hiddenSize, p = v.patchSize;
    const positions = (v.imageSize / p) ** 2 + 1;
    const e = 'vision_model.embeddings.';
    add('vision', 'embedding', `${e}class_embedding`, [1, 1, c]);
    add('vision', 'weight', `${e}patch_embedding.weight`, [c, v.numChannels, p, p]);
    add('vision', 'bias', `${e}patch_embedding.bias`, [c]);
    add('vision', 'embedding', `${e}position_embedding`, [1, positions, c]);
    const layerNorm = v.normType === 'layer_norm';
    for (let i = 0; i < v.numHiddenLayers; i++) {
      const l = `vision_model.encoder.layers.${i}.`;
      add('vision', 'norm', `${l}norm1.weight`, [c]);
      if (layerNorm) add('vision', 'bias', `${l}norm1.bias`, [c]);
      add('vision', 'weight', `${l}attn.qkv.weight`, [3 * c, c]);
      if (v.qkvBias) add('vision', 'bias', `${l}attn.qkv.bias`, [3 * c]);
      if (v.qkNormalization) {
        add('vision', 'norm', `${l}attn.q_norm.weight`, [c]);
        add('vision', 'norm', `${l}attn.k_norm.weight`, [c]);
      }
      add('vision', 'weight', `${l}attn.proj.weight`, [c, c]);
      add('vision', 'bias', `${l}attn.proj.bias`, [c]);
      add('vision', 'norm', `${l}norm2.weight`, [c]);
      if (layerNorm) add('vision', 'bias', `${l}norm2.bias`, [c]);
      add('vision', 'weight', `${l}mlp.fc1.weight`, [v.intermediateSize, c]);
      add('vision', 'bias', `${l}mlp.fc1.bias`, [v.intermediateSize]);
      add('vision', 'weight', `${l}mlp.fc2.weight`, [c, v.intermediateSize]);
      add('vision', 'bias', `${l}mlp.fc2.bias`, [c]);
      add('vision', 'layerScale', `${l}ls1`, [c]);
      add('vision', 'layerScale', `${l}ls2`, [c]);
    }
  }
  const k = config.connector;
  if (k) {
    add('connector', 'norm', 'mlp1.0.weight', [k.inputSize]);
    add('connector', 'bias', 'mlp1.0.bias', [k.inputSize]);
    add('connector', 'weight', 'mlp1.1.weight', [k.outputSize, k.inputSize]);
    add('connector', 'bias', 'mlp1.1.bias', [k.outputSize]);
    add('connector', 'weight', 'mlp1.3.weight', [k.outputSize, k.outputSize]);
    add('connector', 'bias', 'mlp1.3.bias', [k.outputSize]);
  }
  const lm = config.language, h = lm.hiddenSize, d = lm.headDim;
  const m = `${languagePrefix(config)}model.`;
  add('language', 'embedding', `${m}embed_tokens.weight`, [lm.vocabSize, h]);
  for (let i = 0; i < lm.numHiddenLayers; i++) {
    const l = `${m}layers.${i}.`;
    add('language', 'norm', `${l}input_layernorm.weight`, [h]);
    for (const [proj, heads] of [['q', lm.numAttentionHeads], ['k', lm.numKeyValueHeads], ['v', lm.numKeyValueHeads]] as const) {
      add('language', 'weight', `${l}self_attn.${proj}_proj.weight`, [heads * d, h]);
      add('language', 'bias', `${l}self_attn.${proj}_proj.bias`, [heads * d]);
    }
    add('language', 'weight', `${l}self_attn.o_proj.weight`, [h, lm.numAttentionHeads * d]);
    add('language', 'norm', `${l}post_attention_layernorm.weight`, [h]);
    add('language', 'weight', `${l}mlp.gate_proj.weight`, [lm.intermediateSize, h]);
    add('language', 'weight', `${l}mlp.up_proj.weight`, [lm.intermediateSize, h]);
    add('language', 'weight', `${l}mlp.down_proj.weight`, [h, lm.intermediateSize]);
  }
  add('language', 'norm', `${m}norm.weight`, [h]);
  if (!lm.tieWordEmbeddings) add('language', 'weight', `${languagePrefix(config)}lm_head.weight`, [lm.vocabSize, h]);
  return specs;
}

/** The LM head's weight: its own matrix, or the token embedding table when tied. */
export function lmHeadName(config: ModelConfig): string {
  const prefix = languagePrefix(config);
  return config.language.tieWordEmbeddings ? `${prefix}model.embed_tokens.weight` : `${prefix}lm_head.weight`;
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

/** Looks a parameter up by name; R1VError('ARGUMENT') listing a few names when unknown. */
export function findParameter(params: ReadonlyMap<string, Parameter>, name: string, fn: string): Parameter {
  const p = params.get(name);
  if (!p) {
    const some = [...params.keys()].slice(0, 4).join(', ');
    throw new R1VError('ARGUMENT', `${fn}: no parameter named '${name}' (names look like: ${some}, ...)`);
  }
  return p;
}

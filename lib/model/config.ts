// The model configuration in Hugging Face form: an InternVLChatConfig (model_type
// 'internvl_chat': InternViT vision tower + pixel-shuffle MLP connector + Qwen2 language model)
// or a plain Qwen2Config (model_type 'qwen2': the language model alone). Parsing checks
// everything the model's shapes depend on, so a bad config fails here with the field's path
// rather than later as a shape error deep in a forward pass.
//
// Every section has an explicit list of the fields it reads and of the fields it accepts and
// ignores (training-only flags, generation defaults); anything else is reported through `warn`
// and ignored. Fields missing where Hugging Face has a default take that default; the fields the
// shapes are built from are required.
import { R1VError } from '../core/errors.js';
import type { ImageTilingConfig } from '../data/image.js';

export type { ImageTilingConfig } from '../data/image.js';

/** InternViT: patch embedding + CLS + position embeddings, pre-norm bidirectional blocks. */
export interface VisionConfig {
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numAttentionHeads: number;
  /** hiddenSize / numAttentionHeads. */
  readonly headDim: number;
  readonly numHiddenLayers: number;
  /** Side of the square input tile in pixels. */
  readonly imageSize: number;
  readonly patchSize: number;
  /** Patches per tile side: imageSize / patchSize (even). */
  readonly gridSize: number;
  /** Patch tokens per tile: gridSize² (each tile's sequence in the tower is 1 CLS + numPatches). */
  readonly numPatches: number;
  /** Input channels (3 for RGB). */
  readonly numChannels: number;
  readonly normType: 'layer_norm' | 'rms_norm';
  readonly layerNormEps: number;
  /** RMSNorm on q and k (over the full hidden size) before attention. */
  readonly qkNormalization: boolean;
  /** Whether the fused qkv projection has a bias. */
  readonly qkvBias: boolean;
  readonly hiddenAct: 'gelu';
  /** Initial value of the per-channel layer scales ls1/ls2 (InternViT's initializer_factor). */
  readonly initializerFactor: number;
}

/** The pixel-shuffle MLP connector (InternVL's mlp1) from vision features to language embeddings. */
export interface ConnectorConfig {
  readonly downsampleRatio: 0.5;
  readonly psVersion: 'v2';
  /** Image tokens per tile: (imageSize / patchSize)² · downsampleRatio². */
  readonly tokensPerTile: number;
  /** Width after pixel shuffle: vision hiddenSize / downsampleRatio². */
  readonly inputSize: number;
  /** Width of its output (the language model's hiddenSize). */
  readonly outputSize: number;
}

/** The Qwen2 decoder: GQA with RoPE and q/k/v biases, SwiGLU MLP, RMSNorm. */
export interface LanguageConfig {
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numHiddenLayers: number;
  readonly numAttentionHeads: number;
  readonly numKeyValueHeads: number;
  /** hiddenSize / numAttentionHeads. */
  readonly headDim: number;
  readonly maxPositionEmbeddings: number;
  readonly ropeTheta: number;
  readonly rmsNormEps: number;
  /** The LM head shares the token embedding matrix. */
  readonly tieWordEmbeddings: boolean;
  readonly hiddenAct: 'silu';
  /**
   * Dynamic NTK RoPE scaling (InternVL3's llm_config has { type: 'dynamic', factor: 2 }). It only
   * changes RoPE for sequences longer than maxPositionEmbeddings, which the model rejects, so
   * within the accepted lengths it is plain RoPE. Undefined: no scaling.
   */
  readonly ropeScaling?: { readonly type: 'dynamic'; readonly factor: number };
}

/** A parsed, validated model configuration. */
export interface ModelConfig {
  readonly modelType: 'internvl_chat' | 'qwen2';
  /** Absent for a text-only Qwen2 checkpoint. */
  readonly vision?: VisionConfig;
  readonly connector?: ConnectorConfig;
  readonly imageTiling?: ImageTilingConfig;
  readonly language: LanguageConfig;
  /**
   * Token id that marks image-token positions. Hugging Face InternVL takes it from the
   * tokenizer (`<IMG_CONTEXT>`); read from `img_context_token_id` when the config has it.
   */
  readonly imageContextTokenId?: number;
  /** The conversation template name (`template`), e.g. 'internvl2_5'. */
  readonly templateName?: string;
  /** The paths of the fields that were ignored as unknown (each one also went to `warn`). */
  readonly unknownFields: readonly string[];
  /** The object as given (a frozen deep copy), so saving writes the original back. */
  readonly raw: Readonly<Record<string, unknown>>;
}

/** Options of {@link parseModelConfig}. */
export interface ParseModelConfigOptions {
  /** Where the config came from (e.g. a file path); starts every error and warning message. */
  source?: string;
  /** Receives one message per unknown field. Default: console.warn. */
  warn?: (message: string) => void;
}

// Serialized by every Hugging Face PretrainedConfig: generation defaults, output flags,
// bookkeeping. Accepted and ignored in every section.
const PRETRAINED_CONFIG_FIELDS = [
  'architectures', 'auto_map', 'torch_dtype', 'dtype', 'transformers_version', 'return_dict',
  'output_hidden_states', 'output_attentions', 'torchscript', 'use_bfloat16', 'tf_legacy_loss',
  'pruned_heads', 'chunk_size_feed_forward', 'is_encoder_decoder', 'is_decoder',
  'cross_attention_hidden_size', 'add_cross_attention', 'tie_encoder_decoder', 'max_length',
  'min_length', 'do_sample', 'early_stopping', 'num_beams', 'num_beam_groups', 'diversity_penalty',
  'temperature', 'top_k', 'top_p', 'typical_p', 'repetition_penalty', 'length_penalty',
  'no_repeat_ngram_size', 'encoder_no_repeat_ngram_size', 'bad_words_ids', 'num_return_sequences',
  'output_scores', 'return_dict_in_generate', 'forced_bos_token_id', 'forced_eos_token_id',
  'remove_invalid_values', 'exponential_decay_length_penalty', 'suppress_tokens',
  'begin_suppress_tokens', 'finetuning_task', 'id2label', 'label2id', 'tokenizer_class', 'prefix',
  'bos_token_id', 'pad_token_id', 'eos_token_id', 'sep_token_id', 'decoder_start_token_id',
  'task_specific_params', 'problem_type', 'name_or_path', 'use_return_dict',
] as const;

/** InternVLChatConfig fields read here. */
export const INTERNVL_FIELDS = [
  'model_type', 'vision_config', 'llm_config', 'downsample_ratio', 'ps_version', 'select_layer',
  'force_image_size', 'template', 'dynamic_image_size', 'max_dynamic_patch', 'min_dynamic_patch',
  'use_thumbnail', 'img_context_token_id',
] as const;
/** InternVLChatConfig fields accepted and ignored (training-only or mirrored from llm_config). */
export const INTERNVL_IGNORED = [
  'hidden_size', 'tie_word_embeddings', 'use_backbone_lora', 'use_llm_lora', 'pad2square',
  'image_fold', 'system_message', 'use_fa3',
] as const;
/** InternVisionConfig fields read here. */
export const VISION_FIELDS = [
  'model_type', 'hidden_size', 'intermediate_size', 'num_attention_heads', 'num_hidden_layers',
  'image_size', 'patch_size', 'num_channels', 'norm_type', 'layer_norm_eps', 'qk_normalization',
  'qkv_bias', 'hidden_act', 'initializer_factor',
] as const;
/** InternVisionConfig fields accepted and ignored (training-only). */
export const VISION_IGNORED = [
  'use_flash_attn', 'use_fa3', 'drop_path_rate', 'dropout', 'attention_dropout', 'initializer_range',
  // InternViT's mixture-of-experts settings, inert while use_moe is false (checked below).
  'use_moe', 'num_experts', 'num_routed_experts', 'num_shared_experts', 'capacity_factor', 'eval_capacity_factor',
  'moe_coeff_ratio', 'moe_intermediate_size', 'moe_output_scale', 'noisy_gate_policy', 'laux_allreduce',
  'shared_expert_intermediate_size', 'use_residual', 'use_rts', 'use_weighted_residual',
] as const;
/** Qwen2Config fields read here. */
export const QWEN2_FIELDS = [
  'model_type', 'vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers',
  'num_attention_heads', 'num_key_value_heads', 'max_position_embeddings', 'rope_theta',
  'rms_norm_eps', 'tie_word_embeddings', 'hidden_act', 'rope_scaling', 'use_sliding_window',
] as const;
/** Qwen2Config fields accepted and ignored (training-only, or inert without sliding windows). */
export const QWEN2_IGNORED = [
  'attention_dropout', 'initializer_range', 'use_cache', 'sliding_window', 'max_window_layers',
  'moe_config', 'attn_implementation', 'layer_types',
] as const;

type Json = Record<string, unknown>;

interface Issues {
  missing: string[];
  invalid: string[];
  unknown: string[];
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function show(v: unknown): string {
  return typeof v === 'string' ? `'${v}'` : JSON.stringify(v) ?? String(v);
}

/** Reads the fields of one config section, recording what is missing, invalid or unknown. */
class Section {
  constructor(
    private readonly obj: Json,
    private readonly path: string,
    private readonly issues: Issues,
    read: readonly string[],
    ignored: readonly string[],
  ) {
    const known = new Set<string>([...read, ...ignored, ...PRETRAINED_CONFIG_FIELDS]);
    // Leading-underscore keys are Hugging Face internals (_name_or_path, _commit_hash, ...).
    for (const key of Object.keys(obj)) {
      if (!known.has(key) && !key.startsWith('_')) issues.unknown.push(this.name(key));
    }
  }

  name(key: string): string {
    return this.path ? `${this.path}.${key}` : key;
  }

  invalid(key: string, why: string): void {
    this.issues.invalid.push(`${this.name(key)} ${why}`);
  }

  /** The value, or undefined when absent or null (Hugging Face writes null for "unset"). */
  private get(key: string, required: boolean): unknown {
    const v = this.obj[key];
    if (v === undefined || v === null) {
      if (required) this.issues.missing.push(this.name(key));
      return undefined;
    }
    return v;
  }

  positiveInt(key: string, fallback?: number): number | undefined {
    const v = this.get(key, fallback === undefined);
    if (v === undefined) return fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
      this.invalid(key, `must be a positive integer (got ${show(v)})`);
      return undefined;
    }
    return v;
  }

  positiveNumber(key: string, fallback?: number): number | undefined {
    const v = this.get(key, fallback === undefined);
    if (v === undefined) return fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      this.invalid(key, `must be a positive number (got ${show(v)})`);
      return undefined;
    }
    return v;
  }

  nonNegativeInt(key: string): number | undefined {
    const v = this.get(key, false);
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
      this.invalid(key, `must be a non-negative integer (got ${show(v)})`);
      return undefined;
    }
    return v;
  }

  bool(key: string, fallback: boolean): boolean | undefined {
    const v = this.get(key, false);
    if (v === undefined) return fallback;
    if (typeof v !== 'boolean') {
      this.invalid(key, `must be a boolean (got ${show(v)})`);
      return undefined;
    }
    return v;
  }

  string(key: string): string | undefined {
    const v = this.get(key, false);
    if (v === undefined) return undefined;
    if (typeof v !== 'string') {
      this.invalid(key, `must be a string (got ${show(v)})`);
      return undefined;
    }
    return v;
  }

  /** One of the supported values; `fallback` undefined makes the field required. */
  oneOf<T extends string | number>(key: string, supported: readonly T[], fallback?: T): T | undefined {
    const v = this.get(key, fallback === undefined);
    if (v === undefined) return fallback;
    if (!supported.includes(v as T)) {
      this.invalid(key, `${show(v)} is not supported (supported: ${supported.map(show).join(', ')})`);
      return undefined;
    }
    return v as T;
  }

  section(key: string): Json | undefined {
    const v = this.get(key, true);
    if (v === undefined) return undefined;
    if (!isObject(v)) {
      this.invalid(key, `must be an object (got ${show(v)})`);
      return undefined;
    }
    return v;
  }
}

function allDefined<T extends Record<string, unknown>>(fields: T): fields is { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.values(fields).every((v) => v !== undefined);
}

function parseVision(obj: Json, path: string, issues: Issues): VisionConfig | undefined {
  const s = new Section(obj, path, issues, VISION_FIELDS, VISION_IGNORED);
  s.oneOf('model_type', ['intern_vit_6b'], 'intern_vit_6b');
  if (s.bool('use_moe', false) === true) s.invalid('use_moe', 'true is not supported (dense InternViT only)');
  const f = {
    hiddenSize: s.positiveInt('hidden_size'),
    intermediateSize: s.positiveInt('intermediate_size'),
    numAttentionHeads: s.positiveInt('num_attention_heads'),
    numHiddenLayers: s.positiveInt('num_hidden_layers'),
    imageSize: s.positiveInt('image_size'),
    patchSize: s.positiveInt('patch_size'),
    numChannels: s.positiveInt('num_channels', 3),
    // Defaults are InternVisionConfig's.
    normType: s.oneOf('norm_type', ['layer_norm', 'rms_norm'] as const, 'rms_norm'),
    layerNormEps: s.positiveNumber('layer_norm_eps', 1e-6),
    qkNormalization: s.bool('qk_normalization', false),
    qkvBias: s.bool('qkv_bias', false),
    hiddenAct: s.oneOf('hidden_act', ['gelu'] as const, 'gelu'),
    initializerFactor: s.positiveNumber('initializer_factor', 0.1),
  };
  if (!allDefined(f)) return undefined;
  let ok = true;
  if (f.hiddenSize % f.numAttentionHeads !== 0) {
    s.invalid('num_attention_heads', `(${f.numAttentionHeads}) must divide hidden_size (${f.hiddenSize})`);
    ok = false;
  }
  if (f.imageSize % f.patchSize !== 0) {
    s.invalid('image_size', `(${f.imageSize}) must be a multiple of patch_size (${f.patchSize})`);
    ok = false;
  } else if ((f.imageSize / f.patchSize) % 2 !== 0) {
    // The 0.5 pixel shuffle merges 2×2 patches, so the patch grid side must be even.
    s.invalid('image_size', `/ patch_size (${f.imageSize}/${f.patchSize} = ${f.imageSize / f.patchSize}) must be even for the pixel shuffle`);
    ok = false;
  }
  const gridSize = f.imageSize / f.patchSize;
  return ok ? { ...f, headDim: f.hiddenSize / f.numAttentionHeads, gridSize, numPatches: gridSize * gridSize } : undefined;
}

/**
 * rope_scaling: null / absent, 'default', or 'dynamic' (NTK, which changes nothing up to
 * max_position_embeddings; longer sequences are rejected). Others change RoPE everywhere: invalid.
 */
function parseRopeScaling(value: unknown, s: Section): { type: 'dynamic'; factor: number } | undefined {
  if (value === undefined || value === null) return undefined;
  const v = isObject(value) ? value : {};
  const type = v.rope_type ?? v.type;
  if (type === 'default') return undefined;
  if (type === 'dynamic' && typeof v.factor === 'number' && Number.isFinite(v.factor) && v.factor > 0) {
    return { type: 'dynamic', factor: v.factor };
  }
  s.invalid('rope_scaling', `${show(value)} is not supported (null, 'default', or 'dynamic' with a positive factor)`);
  return undefined;
}

function parseLanguage(obj: Json, path: string, issues: Issues): LanguageConfig | undefined {
  const s = new Section(obj, path, issues, QWEN2_FIELDS, QWEN2_IGNORED);
  s.oneOf('model_type', ['qwen2'], 'qwen2');
  const f = {
    vocabSize: s.positiveInt('vocab_size'),
    hiddenSize: s.positiveInt('hidden_size'),
    intermediateSize: s.positiveInt('intermediate_size'),
    numHiddenLayers: s.positiveInt('num_hidden_layers'),
    numAttentionHeads: s.positiveInt('num_attention_heads'),
    numKeyValueHeads: s.positiveInt('num_key_value_heads'),
    maxPositionEmbeddings: s.positiveInt('max_position_embeddings'),
    ropeTheta: s.positiveNumber('rope_theta'),
    rmsNormEps: s.positiveNumber('rms_norm_eps'),
    // Qwen2Config's default.
    tieWordEmbeddings: s.bool('tie_word_embeddings', false),
    hiddenAct: s.oneOf('hidden_act', ['silu'] as const, 'silu'),
  };
  const ropeScaling = parseRopeScaling(obj.rope_scaling, s);
  const layerTypes = obj.layer_types;
  if (layerTypes !== undefined && layerTypes !== null &&
      (!Array.isArray(layerTypes) || layerTypes.some((t) => t !== 'full_attention'))) {
    s.invalid('layer_types', `${show(layerTypes)} is not supported (full attention in every layer only)`);
  }
  const slidingWindow = s.bool('use_sliding_window', false);
  if (slidingWindow === true) s.invalid('use_sliding_window', 'true is not supported (full attention only)');
  if (!allDefined(f)) return undefined;
  let ok = true;
  if (f.hiddenSize % f.numAttentionHeads !== 0) {
    s.invalid('num_attention_heads', `(${f.numAttentionHeads}) must divide hidden_size (${f.hiddenSize})`);
    ok = false;
  } else if ((f.hiddenSize / f.numAttentionHeads) % 2 !== 0) {
    s.invalid('num_attention_heads', `gives an odd head size (${f.hiddenSize / f.numAttentionHeads}); RoPE rotates pairs`);
    ok = false;
  }
  if (f.numAttentionHeads % f.numKeyValueHeads !== 0) {
    s.invalid('num_attention_heads', `(${f.numAttentionHeads}) must be a multiple of num_key_value_heads (${f.numKeyValueHeads})`);
    ok = false;
  }
  return ok ? { ...f, headDim: f.hiddenSize / f.numAttentionHeads, ...(ropeScaling ? { ropeScaling } : {}) } : undefined;
}

interface Parsed {
  modelType: ModelConfig['modelType'];
  vision?: VisionConfig;
  connector?: ConnectorConfig;
  imageTiling?: ImageTilingConfig;
  language?: LanguageConfig;
  imageContextTokenId?: number;
  templateName?: string;
}

function parseInternVL(obj: Json, issues: Issues): Parsed {
  const s = new Section(obj, '', issues, INTERNVL_FIELDS, INTERNVL_IGNORED);
  const visionObj = s.section('vision_config');
  const llmObj = s.section('llm_config');
  const vision = visionObj && parseVision(visionObj, 'vision_config', issues);
  const language = llmObj && parseLanguage(llmObj, 'llm_config', issues);
  const downsampleRatio = s.oneOf('downsample_ratio', [0.5] as const);
  const psVersion = s.oneOf('ps_version', ['v2'] as const);
  s.oneOf('select_layer', [-1], -1);
  const forceImageSize = s.positiveInt('force_image_size', 0);
  const templateName = s.string('template');
  const dynamicImageSize = s.bool('dynamic_image_size', false);
  // InternVLChatConfig's defaults.
  const minDynamicPatch = s.positiveInt('min_dynamic_patch', 1);
  const maxDynamicPatch = s.positiveInt('max_dynamic_patch', 6);
  const useThumbnail = s.bool('use_thumbnail', false);
  const imageContextTokenId = s.nonNegativeInt('img_context_token_id');

  if (minDynamicPatch !== undefined && maxDynamicPatch !== undefined && minDynamicPatch > maxDynamicPatch) {
    s.invalid('min_dynamic_patch', `(${minDynamicPatch}) must not exceed max_dynamic_patch (${maxDynamicPatch})`);
  }
  if (vision && forceImageSize && forceImageSize !== vision.imageSize) {
    // A different size would need interpolated position embeddings.
    s.invalid('force_image_size', `(${forceImageSize}) must equal vision_config.image_size (${vision.imageSize})`);
  }
  if (language && imageContextTokenId !== undefined && imageContextTokenId >= language.vocabSize) {
    s.invalid('img_context_token_id', `(${imageContextTokenId}) must be below llm_config.vocab_size (${language.vocabSize})`);
  }

  const parsed: Parsed = { modelType: 'internvl_chat', vision, language, imageContextTokenId, templateName };
  if (vision && language && downsampleRatio !== undefined && psVersion !== undefined) {
    parsed.connector = {
      downsampleRatio,
      psVersion,
      tokensPerTile: vision.numPatches * downsampleRatio * downsampleRatio,
      inputSize: vision.hiddenSize / (downsampleRatio * downsampleRatio),
      outputSize: language.hiddenSize,
    };
  }
  if (vision && dynamicImageSize !== undefined && minDynamicPatch !== undefined
      && maxDynamicPatch !== undefined && useThumbnail !== undefined) {
    parsed.imageTiling = { imageSize: vision.imageSize, dynamicImageSize, minDynamicPatch, maxDynamicPatch, useThumbnail };
  }
  return parsed;
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null) {
    for (const child of Object.values(v)) deepFreeze(child);
    Object.freeze(v);
  }
  return v;
}

/**
 * Parses and validates a model configuration in Hugging Face form (the contents of
 * config.json, as an object or as JSON text): an InternVLChatConfig (`model_type`
 * 'internvl_chat', with `vision_config` and `llm_config`) or a plain Qwen2Config
 * (`model_type` 'qwen2', which gives a model with no vision part).
 *
 * Supported: InternViT with LayerNorm or RMSNorm, optional QK-norm; the v2 pixel shuffle with
 * downsample_ratio 0.5 on the last vision layer; Qwen2 with plain RoPE (rope_scaling null, or dynamic NTK, which is plain RoPE within max_position_embeddings) and
 * full attention.
 *
 * @throws R1VError('CONFIG') naming every missing required field by its path
 *   (e.g. 'llm_config.num_key_value_heads') and every invalid or unsupported value.
 *   Unknown fields are not errors: each is passed to `options.warn` and ignored.
 */
export function parseModelConfig(json: unknown, options: ParseModelConfigOptions = {}): ModelConfig {
  const source = options.source ?? 'model config';
  const warn = options.warn ?? ((message: string) => console.warn(message));
  const fail = (message: string): never => {
    throw new R1VError('CONFIG', `${source}: ${message}`);
  };

  let obj: unknown = json;
  if (typeof json === 'string') {
    try {
      obj = JSON.parse(json);
    } catch (error) {
      fail(`not valid JSON (${(error as Error).message})`);
    }
  }
  if (!isObject(obj)) return fail(`must be a JSON object (got ${show(obj)})`);

  const issues: Issues = { missing: [], invalid: [], unknown: [] };
  let parsed: Parsed;
  if (obj.model_type === 'internvl_chat') {
    parsed = parseInternVL(obj, issues);
  } else if (obj.model_type === 'qwen2') {
    parsed = { modelType: 'qwen2', language: parseLanguage(obj, '', issues) };
  } else if (obj.model_type === undefined || obj.model_type === null) {
    return fail("missing required field model_type ('internvl_chat' or 'qwen2')");
  } else {
    return fail(`model_type ${show(obj.model_type)} is not supported (supported: 'internvl_chat', 'qwen2')`);
  }

  for (const field of issues.unknown) warn(`${source}: unknown field ${field} ignored`);
  const problems: string[] = [];
  if (issues.missing.length > 0) problems.push(`missing required fields: ${issues.missing.join(', ')}`);
  problems.push(...issues.invalid);
  if (problems.length > 0 || !parsed.language) return fail(`invalid config: ${problems.join('; ')}`);

  const config: ModelConfig = {
    modelType: parsed.modelType,
    ...(parsed.vision && { vision: parsed.vision }),
    ...(parsed.connector && { connector: parsed.connector }),
    ...(parsed.imageTiling && { imageTiling: parsed.imageTiling }),
    language: parsed.language,
    ...(parsed.imageContextTokenId !== undefined && { imageContextTokenId: parsed.imageContextTokenId }),
    ...(parsed.templateName !== undefined && { templateName: parsed.templateName }),
    unknownFields: issues.unknown,
    raw: structuredClone(obj),
  };
  return deepFreeze(config);
}

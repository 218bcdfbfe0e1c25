import assert from 'node:assert/strict';

import { parseModelConfig, type ModelConfig, type ParseModelConfigOptions } from '../lib/index.js';
import { expectR1VError } from './helpers.js';

type Json = Record<string, unknown>;

// Qwen2.5-0.5B-Instruct's config.json, as published.
function qwen25Config(): Json {
  return {
    architectures: ['Qwen2ForCausalLM'],
    attention_dropout: 0.0,
    bos_token_id: 151643,
    eos_token_id: 151645,
    hidden_act: 'silu',
    hidden_size: 896,
    initializer_range: 0.02,
    intermediate_size: 4864,
    max_position_embeddings: 32768,
    max_window_layers: 21,
    model_type: 'qwen2',
    num_attention_heads: 14,
    num_hidden_layers: 24,
    num_key_value_heads: 2,
    rms_norm_eps: 1e-6,
    rope_scaling: null,
    rope_theta: 1000000.0,
    sliding_window: 32768,
    tie_word_embeddings: true,
    torch_dtype: 'bfloat16',
    transformers_version: '4.43.1',
    use_cache: true,
    use_sliding_window: false,
    vocab_size: 151936,
  };
}

// An InternVL3-1B-like InternVLChatConfig: InternViT-300M + Qwen2.5-0.5B.
function internvlConfig(): Json {
  const { vocab_size: _, ...llm } = qwen25Config();
  return {
    _commit_hash: null,
    _name_or_path: 'OpenGVLab/InternVL3-1B',
    architectures: ['InternVLChatModel'],
    auto_map: { AutoConfig: 'configuration_internvl_chat.InternVLChatConfig' },
    downsample_ratio: 0.5,
    dynamic_image_size: true,
    force_image_size: 448,
    hidden_size: 896,
    image_fold: null,
    llm_config: { ...llm, _name_or_path: './pretrained/Qwen2.5-0.5B', vocab_size: 151674, use_bfloat16: true },
    max_dynamic_patch: 12,
    min_dynamic_patch: 1,
    model_type: 'internvl_chat',
    pad2square: false,
    ps_version: 'v2',
    select_layer: -1,
    system_message: null,
    template: 'internvl2_5',
    tie_word_embeddings: false,
    torch_dtype: 'bfloat16',
    transformers_version: null,
    use_backbone_lora: 0,
    use_llm_lora: 0,
    use_thumbnail: true,
    vision_config: {
      architectures: ['InternVisionModel'],
      attention_dropout: 0.0,
      drop_path_rate: 0.1,
      dropout: 0.0,
      hidden_act: 'gelu',
      hidden_size: 1024,
      image_size: 448,
      initializer_factor: 1.0,
      initializer_range: 0.02,
      intermediate_size: 4096,
      layer_norm_eps: 1e-6,
      model_type: 'intern_vit_6b',
      norm_type: 'layer_norm',
      num_attention_heads: 16,
      num_channels: 3,
      num_hidden_layers: 24,
      patch_size: 14,
      qk_normalization: false,
      qkv_bias: true,
      torch_dtype: 'bfloat16',
      use_flash_attn: true,
    },
  };
}

function vision(c: Json): Json {
  return c.vision_config as Json;
}
function llm(c: Json): Json {
  return c.llm_config as Json;
}

/** Parses, collecting warnings; fails the test on any warning unless `warnings` is given. */
function parse(json: unknown, warnings?: string[], options: ParseModelConfigOptions = {}): ModelConfig {
  return parseModelConfig(json, {
    ...options,
    warn: (m) => (warnings ? warnings.push(m) : assert.fail(`unexpected warning: ${m}`)),
  });
}

function expectConfigError(json: unknown, ...patterns: RegExp[]): void {
  const error = expectR1VError(() => parse(json, []), 'CONFIG');
  for (const re of patterns) assert.match(error.message, re);
}

describe('model config: InternVLChatConfig', () => {
  it('parses an InternVL3-1B-like config with no warnings', () => {
    const c = parse(internvlConfig());
    assert.equal(c.modelType, 'internvl_chat');
    assert.deepEqual(c.vision, {
      hiddenSize: 1024, intermediateSize: 4096, numAttentionHeads: 16, headDim: 64, numHiddenLayers: 24,
      imageSize: 448, patchSize: 14, gridSize: 32, numPatches: 1024, numChannels: 3, normType: 'layer_norm', layerNormEps: 1e-6,
      qkNormalization: false, qkvBias: true, hiddenAct: 'gelu', initializerFactor: 1.0,
    });
    assert.deepEqual(c.language, {
      vocabSize: 151674, hiddenSize: 896, intermediateSize: 4864, numHiddenLayers: 24, numAttentionHeads: 14,
      numKeyValueHeads: 2, headDim: 64, maxPositionEmbeddings: 32768, ropeTheta: 1e6, rmsNormEps: 1e-6,
      tieWordEmbeddings: true, hiddenAct: 'silu',
    });
    // (448/14)² · 0.5² = 32² / 4 = 256 tokens per tile.
    assert.deepEqual(c.connector, { downsampleRatio: 0.5, psVersion: 'v2', tokensPerTile: 256, inputSize: 4096, outputSize: 896 });
    assert.deepEqual(c.imageTiling, { imageSize: 448, dynamicImageSize: true, minDynamicPatch: 1, maxDynamicPatch: 12, useThumbnail: true });
    assert.equal(c.templateName, 'internvl2_5');
    assert.equal(c.imageContextTokenId, undefined);
    assert.deepEqual(c.unknownFields, []);
  });

  it('keeps the raw object as given, as a frozen copy', () => {
    const json = internvlConfig();
    const expected = structuredClone(json);
    const c = parse(json);
    assert.deepEqual(c.raw, expected);
    assert.notEqual(c.raw, json);
    vision(json).hidden_size = 7;
    assert.equal((c.raw.vision_config as Json).hidden_size, 1024);
    assert.ok(Object.isFrozen(c.raw) && Object.isFrozen(c.raw.llm_config) && Object.isFrozen(c));
    assert.equal(JSON.stringify(c.raw), JSON.stringify(expected));
  });

  it('accepts JSON text and applies Hugging Face defaults to optional fields', () => {
    const json = internvlConfig();
    for (const key of ['norm_type', 'layer_norm_eps', 'qk_normalization', 'qkv_bias', 'hidden_act', 'initializer_factor', 'num_channels']) {
      delete vision(json)[key];
    }
    for (const key of ['tie_word_embeddings', 'hidden_act', 'rope_scaling', 'use_sliding_window']) delete llm(json)[key];
    for (const key of ['select_layer', 'force_image_size', 'template', 'dynamic_image_size', 'max_dynamic_patch', 'min_dynamic_patch', 'use_thumbnail']) {
      delete json[key];
    }
    json.img_context_token_id = 151667;
    const c = parse(JSON.stringify(json));
    assert.equal(c.vision?.normType, 'rms_norm');
    assert.equal(c.vision?.initializerFactor, 0.1);
    assert.equal(c.vision?.qkvBias, false);
    assert.equal(c.vision?.numChannels, 3);
    assert.equal(c.language.tieWordEmbeddings, false);
    assert.deepEqual(c.imageTiling, { imageSize: 448, dynamicImageSize: false, minDynamicPatch: 1, maxDynamicPatch: 6, useThumbnail: false });
    assert.equal(c.templateName, undefined);
    assert.equal(c.imageContextTokenId, 151667);
  });

  it('reads rms_norm with QK normalization', () => {
    const json = internvlConfig();
    Object.assign(vision(json), { norm_type: 'rms_norm', qk_normalization: true });
    const c = parse(json);
    assert.equal(c.vision?.normType, 'rms_norm');
    assert.equal(c.vision?.qkNormalization, true);
  });

  it('warns once per unknown field, with its path, and ignores it', () => {
    const json = internvlConfig();
    json.mystery_flag = true;
    vision(json).layerscale_mode = 'per_channel';
    llm(json).num_experts = 8;
    llm(json).extra = { nested: 1 };
    const warnings: string[] = [];
    const c = parse(json, warnings, { source: 'ckpt/config.json' });
    assert.deepEqual(c.unknownFields, ['mystery_flag', 'vision_config.layerscale_mode', 'llm_config.num_experts', 'llm_config.extra']);
    assert.equal(warnings.length, 4);
    for (const [i, field] of c.unknownFields.entries()) {
      assert.equal(warnings[i], `ckpt/config.json: unknown field ${field} ignored`);
    }
    assert.equal(c.language.hiddenSize, 896);
  });

  it('warns through console.warn by default', () => {
    const json = internvlConfig();
    json.mystery_flag = 1;
    const original = console.warn;
    const seen: unknown[] = [];
    console.warn = (...args: unknown[]) => seen.push(...args);
    try {
      parseModelConfig(json);
    } finally {
      console.warn = original;
    }
    assert.deepEqual(seen, ['model config: unknown field mystery_flag ignored']);
  });

  it('lists every missing required field by its path', () => {
    const json = internvlConfig();
    delete llm(json).num_key_value_heads;
    delete llm(json).rope_theta;
    vision(json).patch_size = null;
    delete json.ps_version;
    delete json.downsample_ratio;
    const error = expectR1VError(() => parse(json, [], { source: 'x/config.json' }), 'CONFIG');
    assert.match(error.message, /^x\/config\.json: /);
    for (const name of ['llm_config.num_key_value_heads', 'llm_config.rope_theta', 'vision_config.patch_size', 'ps_version', 'downsample_ratio']) {
      assert.ok(error.message.includes(name), `${name} missing from: ${error.message}`);
    }
    assert.match(error.message, /missing required fields/);
  });

  it('fails on missing sections and on sections that are not objects', () => {
    const a = internvlConfig();
    delete a.llm_config;
    expectConfigError(a, /missing required fields: llm_config/);
    const b = internvlConfig();
    b.vision_config = [1, 2];
    expectConfigError(b, /vision_config must be an object/);
  });

  it('fails on unsupported connector settings', () => {
    const cases: [string, unknown, RegExp][] = [
      ['ps_version', 'v1', /ps_version 'v1' is not supported/],
      ['downsample_ratio', 0.25, /downsample_ratio 0\.25 is not supported/],
      ['select_layer', -4, /select_layer -4 is not supported/],
      ['force_image_size', 224, /force_image_size \(224\) must equal vision_config\.image_size \(448\)/],
      ['min_dynamic_patch', 13, /min_dynamic_patch \(13\) must not exceed max_dynamic_patch \(12\)/],
      ['max_dynamic_patch', 0, /max_dynamic_patch must be a positive integer/],
      ['use_thumbnail', 'yes', /use_thumbnail must be a boolean/],
      ['template', 5, /template must be a string/],
      ['img_context_token_id', 151674, /img_context_token_id \(151674\) must be below llm_config\.vocab_size/],
      ['img_context_token_id', -1, /img_context_token_id must be a non-negative integer/],
    ];
    for (const [key, value, pattern] of cases) {
      const json = internvlConfig();
      json[key] = value;
      expectConfigError(json, pattern);
    }
  });

  it('fails on invalid vision values, naming the field', () => {
    const cases: [Json, RegExp][] = [
      [{ hidden_size: 0 }, /vision_config\.hidden_size must be a positive integer \(got 0\)/],
      [{ num_hidden_layers: 2.5 }, /vision_config\.num_hidden_layers must be a positive integer/],
      [{ intermediate_size: '4096' }, /vision_config\.intermediate_size must be a positive integer \(got '4096'\)/],
      [{ num_attention_heads: 12 }, /vision_config\.num_attention_heads \(12\) must divide hidden_size \(1024\)/],
      [{ image_size: 450 }, /vision_config\.image_size \(450\) must be a multiple of patch_size \(14\)/],
      [{ image_size: 434 }, /vision_config\.image_size .*31.* must be even/],
      [{ norm_type: 'batch_norm' }, /vision_config\.norm_type 'batch_norm' is not supported/],
      [{ hidden_act: 'relu' }, /vision_config\.hidden_act 'relu' is not supported/],
      [{ layer_norm_eps: -1 }, /vision_config\.layer_norm_eps must be a positive number/],
      [{ qk_normalization: 1 }, /vision_config\.qk_normalization must be a boolean/],
      [{ model_type: 'siglip_vision_model' }, /vision_config\.model_type 'siglip_vision_model' is not supported/],
    ];
    for (const [patch, pattern] of cases) {
      const json = internvlConfig();
      Object.assign(vision(json), patch);
      // The force_image_size check must not mask the vision error.
      delete json.force_image_size;
      expectConfigError(json, pattern);
    }
  });

  it("accepts InternVL3's dynamic NTK rope_scaling (plain RoPE within max_position_embeddings) and layer_types", () => {
    const json = internvlConfig();
    Object.assign(llm(json), { rope_scaling: { factor: 2.0, rope_type: 'dynamic', type: 'dynamic' }, layer_types: new Array(24).fill('full_attention') });
    assert.deepEqual(parse(json).language.ropeScaling, { type: 'dynamic', factor: 2 });
    Object.assign(llm(json), { rope_scaling: { rope_type: 'default' } });
    assert.equal(parse(json).language.ropeScaling, undefined);
  });

  it('fails on invalid language values, naming the field', () => {
    const cases: [Json, RegExp][] = [
      [{ vocab_size: -5 }, /llm_config\.vocab_size must be a positive integer \(got -5\)/],
      [{ num_attention_heads: 13 }, /llm_config\.num_attention_heads \(13\) must divide hidden_size \(896\)/],
      [{ num_key_value_heads: 4 }, /llm_config\.num_attention_heads \(14\) must be a multiple of num_key_value_heads \(4\)/],
      [{ hidden_size: 896, num_attention_heads: 128, num_key_value_heads: 2 }, /llm_config\.num_attention_heads gives an odd head size \(7\)/],
      [{ rope_scaling: { type: 'linear', factor: 2.0 } }, /llm_config\.rope_scaling .*linear.* is not supported/],
      [{ rope_scaling: { rope_type: 'dynamic', factor: -1 } }, /llm_config\.rope_scaling .*dynamic.* is not supported/],
      [{ layer_types: ['full_attention', 'sliding_attention'] }, /llm_config\.layer_types .* is not supported/],
      [{ use_sliding_window: true }, /llm_config\.use_sliding_window true is not supported/],
      [{ hidden_act: 'gelu' }, /llm_config\.hidden_act 'gelu' is not supported/],
      [{ rope_theta: Infinity }, /llm_config\.rope_theta must be a positive number/],
      [{ tie_word_embeddings: 'true' }, /llm_config\.tie_word_embeddings must be a boolean/],
      [{ model_type: 'llama' }, /llm_config\.model_type 'llama' is not supported/],
    ];
    for (const [patch, pattern] of cases) {
      const json = internvlConfig();
      Object.assign(llm(json), patch);
      expectConfigError(json, pattern);
    }
  });

  it('reports missing and invalid fields together', () => {
    const json = internvlConfig();
    delete vision(json).image_size;
    llm(json).num_hidden_layers = 0;
    json.ps_version = 'v1';
    expectConfigError(json, /missing required fields: vision_config\.image_size/, /llm_config\.num_hidden_layers must be/, /ps_version 'v1'/);
  });
});

describe('model config: Qwen2Config', () => {
  it('parses a plain Qwen2 config as a language-only model', () => {
    const c = parse(qwen25Config());
    assert.equal(c.modelType, 'qwen2');
    assert.equal(c.vision, undefined);
    assert.equal(c.connector, undefined);
    assert.equal(c.imageTiling, undefined);
    assert.equal('vision' in c, false);
    assert.deepEqual(c.language, {
      vocabSize: 151936, hiddenSize: 896, intermediateSize: 4864, numHiddenLayers: 24, numAttentionHeads: 14,
      numKeyValueHeads: 2, headDim: 64, maxPositionEmbeddings: 32768, ropeTheta: 1e6, rmsNormEps: 1e-6,
      tieWordEmbeddings: true, hiddenAct: 'silu',
    });
    assert.deepEqual(c.raw, qwen25Config());
  });

  it('names missing fields without a path prefix, and warns on vision fields it does not read', () => {
    const json = qwen25Config();
    delete json.num_key_value_heads;
    delete json.vocab_size;
    expectConfigError(json, /missing required fields: vocab_size, num_key_value_heads$/);
    const warnings: string[] = [];
    parse({ ...qwen25Config(), vision_config: {} }, warnings);
    assert.deepEqual(warnings, ['model config: unknown field vision_config ignored']);
  });

  it('fails on a bad top level', () => {
    expectConfigError(null, /must be a JSON object \(got null\)/);
    expectConfigError([qwen25Config()], /must be a JSON object/);
    expectConfigError('{"model_type": ', /not valid JSON/);
    const { model_type: _, ...untyped } = qwen25Config();
    expectConfigError(untyped, /missing required field model_type/);
    expectConfigError({ ...qwen25Config(), model_type: 'llava' }, /model_type 'llava' is not supported/);
  });
});

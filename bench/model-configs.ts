// The InternVL-style models the whole-model benchmarks (bench:model, bench:rollout) run: random
// weights of the given shapes, so they need no checkpoint.
import { readFileSync } from 'node:fs';

import type { Batch, ModelConfig } from '../lib/index.js';

export type Json = Record<string, unknown>;

export interface BenchModel {
  name: string;
  /** An HF InternVL config.json (vision_config, llm_config, connector fields). */
  config: Json;
  /** Id of `<IMG_CONTEXT>`, the token image features replace. */
  imageContextTokenId: number;
}

function internvl(o: {
  image: number; patch: number; vHidden: number; vInter: number; vHeads: number; vLayers: number;
  vocab: number; hidden: number; inter: number; layers: number; heads: number; kvHeads: number;
}): Json {
  return {
    model_type: 'internvl_chat', downsample_ratio: 0.5, ps_version: 'v2', select_layer: -1,
    force_image_size: o.image, template: 'internvl2_5', img_context_token_id: o.vocab - 1,
    vision_config: {
      model_type: 'intern_vit_6b', hidden_size: o.vHidden, intermediate_size: o.vInter, num_attention_heads: o.vHeads,
      num_hidden_layers: o.vLayers, image_size: o.image, patch_size: o.patch, num_channels: 3, norm_type: 'layer_norm',
      layer_norm_eps: 1e-6, qk_normalization: false, qkv_bias: true, hidden_act: 'gelu', initializer_factor: 0.1,
    },
    llm_config: {
      model_type: 'qwen2', vocab_size: o.vocab, hidden_size: o.hidden, intermediate_size: o.inter,
      num_hidden_layers: o.layers, num_attention_heads: o.heads, num_key_value_heads: o.kvHeads,
      max_position_embeddings: 4096, rope_theta: 1e6, rms_norm_eps: 1e-6, tie_word_embeddings: true, hidden_act: 'silu',
    },
  };
}

// CPU models: 224-px tiles of 14-px patches, 256 patches (+ CLS) → 64 image tokens per tile.
/** ~5M parameters: ViT 4×128 (head 32), LM 3×256 (head 64, GQA 4/2), vocab 8192 tied. */
export const TINY: BenchModel = {
  name: 'tiny',
  config: internvl({ image: 224, patch: 14, vHidden: 128, vInter: 512, vHeads: 4, vLayers: 4, vocab: 8192, hidden: 256, inter: 704, layers: 3, heads: 4, kvHeads: 2 }),
  imageContextTokenId: 8191,
};

/** ~50M parameters: ViT 6×384 (head 64), LM 10×512 (head 64, GQA 8/2), vocab 16384 tied. */
export const SMALL: BenchModel = {
  name: 'small',
  config: internvl({ image: 224, patch: 14, vHidden: 384, vInter: 1536, vHeads: 6, vLayers: 6, vocab: 16384, hidden: 512, inter: 1408, layers: 10, heads: 8, kvHeads: 2 }),
  imageContextTokenId: 16383,
};

/** The real InternVL3-1B shapes (448-px tiles: 1024 patches → 256 image tokens). */
export const INTERNVL3_1B: BenchModel = {
  name: 'InternVL3-1B',
  config: JSON.parse(readFileSync(new URL('../test/fixtures/internvl3-1b-config.json', import.meta.url), 'utf8')) as Json,
  imageContextTokenId: 151667,  // <IMG_CONTEXT> in InternVL3's tokenizer
};

/** A packed batch of a bench model: random text, image tiles, next-token targets. */
export interface BatchSpec {
  sequences: number;
  /** Tokens per sequence (image tokens included). */
  seqLen: number;
  /** Sequences 0, 2, 4, ... (every other one) hold one tile, up to this many. */
  tiles: number;
  /** Text tokens before the image tokens in a sequence with a tile. */
  prefix: number;
}

/** Random text ids (never the image id), image tokens, targets = next token where both are text. */
export function benchBatch(c: BenchModel, spec: BatchSpec, cfg: ModelConfig): Batch {
  const { sequences, seqLen, tiles, prefix } = spec;
  const perTile = cfg.connector!.tokensPerTile, v = cfg.vision!, vocab = cfg.language.vocabSize;
  let seed = 12345;
  const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const inputIds = new Int32Array(sequences * seqLen);
  for (let i = 0; i < inputIds.length; i++) {
    inputIds[i] = Math.floor(next() * vocab);
    if (inputIds[i] === c.imageContextTokenId) inputIds[i] = 0;
  }
  for (let t = 0; t < tiles; t++) inputIds.fill(c.imageContextTokenId, 2 * t * seqLen + prefix, 2 * t * seqLen + prefix + perTile);
  const targets = new Int32Array(inputIds.length).fill(-100);
  for (let s = 0; s < sequences; s++) {
    for (let t = s * seqLen; t < (s + 1) * seqLen - 1; t++) {
      if (inputIds[t] !== c.imageContextTokenId && inputIds[t + 1] !== c.imageContextTokenId) targets[t] = inputIds[t + 1]!;
    }
  }
  const pixelValues = new Float32Array(tiles * 3 * v.imageSize * v.imageSize);
  for (let i = 0; i < pixelValues.length; i++) pixelValues[i] = 4 * next() - 2;
  return { inputIds, targets, cuSeqlens: Int32Array.from({ length: sequences + 1 }, (_, i) => i * seqLen), pixelValues };
}

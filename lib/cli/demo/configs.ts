// The demo's stage settings are the example's YAML files (examples/mnist-arith/), the same ones
// `r1v train` runs there, so there is one source of them. A preset scales every stage's steps
// (and checkpoint interval); the control's steps are then set so it sees as many samples as GRPO
// generated. The tokenizer is the example's small byte-level BPE over the world's words.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { R1VError } from '../../core/errors.js';
import { writeSmallTokenizer } from '../../data/small-tokenizer.js';
import { Tokenizer } from '../../data/tokenizer.js';
import { loadTrainConfig, type TrainConfig } from '../../train/config.js';
import { STAGES, type DemoPreset, type StageName } from './pipeline.js';
import { WORDS } from './world.js';

/** examples/mnist-arith of this package (it ships with it). */
export function exampleDir(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'examples', 'mnist-arith');
}

/** Every stage's config, scaled by the preset. */
export async function demoConfigs(preset: DemoPreset, device: string): Promise<Record<StageName, TrainConfig>> {
  const dir = exampleDir();
  const out = {} as Record<StageName, TrainConfig>;
  for (const s of STAGES) {
    const c = await loadTrainConfig(path.join(dir, `${s.name}.yaml`));
    c.device = device;
    for (const stage of c.stages) {
      stage.steps = Math.max(1, Math.round(stage.steps * preset.stepsScale));
      if (stage.optimizer.warmupSteps >= stage.steps) stage.optimizer.warmupSteps = Math.floor(stage.steps / 4);
    }
    c.checkpoint.every = Math.max(1, Math.round(c.checkpoint.every * preset.stepsScale));
    out[s.name] = c;
  }
  const grpo = out['4-grpo'].stages[0]!, control = out['control-sft'].stages[0]!;
  control.steps = Math.max(1, Math.round((grpo.steps * grpo.batch.prompts * grpo.batch.samplesPerPrompt) / control.batch.prompts));
  return out;
}

/**
 * The example's model config (config.json of a random InternVL-style model). Its vocabulary
 * size and <IMG_CONTEXT> id must be the tokenizer's; a mismatch is a CONFIG error.
 */
export async function demoModelConfig(tokenizer: Tokenizer): Promise<Record<string, unknown>> {
  const file = path.join(exampleDir(), 'model.json');
  let config: { img_context_token_id?: unknown; llm_config?: { vocab_size?: unknown } };
  try {
    config = JSON.parse(await fsp.readFile(file, 'utf8')) as typeof config;
  } catch (error) {
    throw new R1VError('IO', `cannot read the demo's model config ${file}: ${(error as Error).message}`, { cause: error });
  }
  if (config.llm_config?.vocab_size !== tokenizer.vocabSize || config.img_context_token_id !== tokenizer.imageContextTokenId) {
    throw new R1VError('CONFIG', `${file}: vocab_size ${String(config.llm_config?.vocab_size)} and img_context_token_id ${String(config.img_context_token_id)} `
      + `must be the tokenizer's (${tokenizer.vocabSize}, ${tokenizer.imageContextTokenId})`);
  }
  return config as Record<string, unknown>;
}

/** Writes the world's tokenizer into dir and loads it. */
export async function demoTokenizer(dir: string): Promise<Tokenizer> {
  await writeSmallTokenizer(dir, { words: WORDS, addedTokens: ['<think>', '</think>'] });
  return Tokenizer.load(dir);
}

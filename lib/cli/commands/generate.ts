// `r1v generate --checkpoint DIR --prompt TEXT [--image FILE]...`: the model's answer(s) to one
// chat prompt, printed to stdout (special tokens left out). With --n > 1 each sample follows a
// header line; --json prints the samples with their token counts and finish reasons. The prompt
// goes through the tokenizer's chat template; images get `<image>` placeholders unless the
// prompt already has them, as for dataset rows.
import type { Command } from 'commander';

import type { ImageInput } from '../../data/image.js';
import { generate as generateSamples } from '../../rollout/generate.js';
import { rowPrompt } from '../../train/samples.js';
import { InputError, loadingInput } from '../failures.js';
import { loadModel, resolveModelDir } from '../model-dir.js';
import { deviceOption, nonNegativeInt, nonNegativeNumber, positiveInt, probability, tokenizerOption } from '../options.js';

interface GenerateOptions {
  checkpoint: string;
  prompt: string;
  image?: string[];
  systemPrompt?: string;
  n: number;
  temperature: number;
  topP: number;
  topK: number;
  maxNewTokens: number;
  seed: number;
  tokenizer?: string;
  device: string;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('generate')
    .description("print a model's answer(s) to a prompt, optionally with images")
    .requiredOption('--checkpoint <dir>', 'model directory, trainer checkpoint, or run directory (its latest checkpoint)')
    .requiredOption('--prompt <text>', 'the user message')
    .option('--image <file>', 'an image for the prompt (repeat for several)', (file: string, all: string[] | undefined) => [...(all ?? []), file])
    .option('--system-prompt <text>', 'a system message before the prompt')
    .option('--n <n>', 'samples to generate', positiveInt, 1)
    .option('--temperature <t>', 'sampling temperature, 0 = greedy', nonNegativeNumber, 1)
    .option('--top-p <p>', 'nucleus sampling mass', probability, 1)
    .option('--top-k <k>', 'keep the k most likely tokens (0 = off)', nonNegativeInt, 0)
    .option('--max-new-tokens <n>', 'most tokens per sample', positiveInt, 256)
    .option('--seed <n>', 'sampling seed (same seed, same samples)', nonNegativeInt, 0)
    .addOption(tokenizerOption())
    .addOption(deviceOption('device', 'auto'))
    .option('--json', 'print the samples as JSON')
    .action((o: GenerateOptions) => generate(o));
}

async function generate(o: GenerateOptions): Promise<void> {
  const source = await loadingInput(() => resolveModelDir(o.checkpoint, '--checkpoint'));
  using loaded = await loadingInput(() => loadModel(source, { tokenizer: o.tokenizer, device: o.device, seed: o.seed }));
  const { model, tokenizer } = loaded;
  const images: ImageInput[] = o.image ?? [];
  const prompt = rowPrompt({ question: o.prompt, answer: '', images }, o.systemPrompt ?? source.runConfig?.data.systemPrompt);
  const started = performance.now();
  const out = await generateSamples(model, [prompt], {
    tokenizer, n: o.n, temperature: o.temperature, topP: o.topP, topK: o.topK, maxNewTokens: o.maxNewTokens, seed: o.seed,
  });
  const seconds = (performance.now() - started) / 1000;
  const problem = out.prompts[0];
  if (problem instanceof Error) throw new InputError(problem.message, { cause: problem });
  const samples = out.map((g) => ({
    text: tokenizer.decode(g.tokenIds, { skipSpecialTokens: true }), tokens: g.tokenIds.length, finishReason: g.finishReason,
  }));
  if (o.json) {
    console.log(JSON.stringify({
      checkpoint: source.dir, prompt: o.prompt, images, seed: o.seed, temperature: o.temperature, samples,
      stats: { promptTokens: out.stats.prefillTokens, generatedTokens: out.stats.generatedTokens, seconds },
    }, null, 2));
    return;
  }
  samples.forEach((s, i) => {
    if (o.n > 1) console.log(`--- sample ${i + 1}/${o.n} (${s.finishReason}, ${s.tokens} tokens)`);
    console.log(s.text);
  });
  console.error(`${out.stats.generatedTokens} tokens generated in ${seconds.toFixed(2)} s (${(out.stats.generatedTokens / seconds).toFixed(1)} tokens/s)`);
}

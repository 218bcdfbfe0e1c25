// Writes docs/config.md from the training config's schema (lib/train/config.ts), so the page
// lists every key with its type, default and meaning. `npm run docs:config`; a test checks the
// page is current.
import { writeFileSync } from 'node:fs';

import { configKeys } from '../lib/train/config.js';

const rows = configKeys().map((k) => `| \`${k.path}\` | ${k.type} | ${k.default ? `\`${k.default.replace(/\|/g, '\\|')}\`` : k.required ? 'required' : '—'} | ${k.description.replace(/\|/g, '\\|')} |`);
const page = `# Training config

What \`r1v train <config>\`, \`loadTrainConfig(file)\` and \`Trainer.create({ config })\` read: YAML or
JSON, validated in full before anything runs. An unknown key (a typo) or a bad value fails with
one error naming its path (\`stages[1].algorithm.clipHigh: ...\`), exit code 2 on the command line.
Relative paths in a file are resolved against the file's directory. This page is generated from
the schema (\`npm run docs:config\`); \`configKeys()\` returns the same table in code.

A minimal config (a GRPO stage on a JSONL file of \`{ question, answer, image? }\` rows):

\`\`\`yaml
model: { path: path/to/InternVL-style-model }
tokenizer: path/to/tokenizer          # or qwen3, the packaged Qwen3 tokenizer
data: { train: train.jsonl, val: val.jsonl }
run: { dir: runs/grpo }
stages:
  - { name: grpo, kind: rl, steps: 200, optimizer: { lr: 1.0e-6, maxGradNorm: 1 }, batch: { prompts: 8, samplesPerPrompt: 8 } }
\`\`\`

examples/mnist-arith/ has one config per stage of the R1V3 recipe (\`r1v demo\` runs them).

| key | type | default | meaning |
| --- | --- | --- | --- |
${rows.join('\n')}

Cross-key rules checked as well: advantage \`gae\` needs a \`critic\` (and a critic is only used
with \`gae\`); an RL stage needs a reward; \`miniBatches\` ≤ \`batch.prompts\`; a decaying schedule
needs \`warmupSteps\` < \`steps\`; \`overlong.buffer\` ≤ \`rollout.maxNewTokens\`; stage names are unique;
\`model.path\` and \`model.config\` are not both given.
`;
writeFileSync(new URL('../docs/config.md', import.meta.url), page);

// One GRPO step's time, split: rollout (generate), rewards (the built-in accuracy and format
// rules), the TypeScript side of the update (advantages, packing, the policy loss and its
// per-token coefficients, rollout metrics) and the engine's side (forward, backward, AdamW) —
// the TypeScript side must stay a small share of the step (under 5%).
//   npm run bench:train              CPU: tiny (~5M) and small (~50M) models, f32; 8 prompts × 8
//                                    samples, 96-token prompts (half with a 224-px tile), 48 new tokens
//   npm run bench:train -- --save    also writes bench/results/train-<machine>-<date>.{json,md}
//
// Method: the step is run with the library's pieces (rollout, score, advantages, policyUpdate).
// The TypeScript calls inside policyUpdate (packing, rl.policyLoss) are timed by repeating them on
// the step's own data right after it, so "engine" = update time − those TypeScript calls. Wall
// clock, median of 3 steps after one warm-up step. Random weights and random prompts.
import { mkdirSync, writeFileSync } from 'node:fs';

import {
  accuracyReward, advantages, AdamW, devices, Engine, formatReward, packSequences, parseTrainConfig, policyUpdate, responseOffsets, rl,
  rollout, rolloutMetrics, score, Tokenizer, VisionLanguageModel, type DatasetRow, type RolloutSample,
} from '../lib/index.js';
import { packagedTokenizerDir } from '../lib/data/tokenizer.js';
import { runIdentity } from '../lib/bench/run-identity.js';
import { SMALL, TINY, type BenchModel } from './model-configs.js';

const PROMPTS = 8, SAMPLES = 8, PROMPT_TOKENS = 96, NEW_TOKENS = 48;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function concat(samples: readonly RolloutSample[], f: (s: RolloutSample) => Float32Array): Float32Array {
  return Float32Array.from(samples.flatMap((s) => Array.from(f(s))));
}

async function step(model: VisionLanguageModel, optimizer: AdamW, rows: DatasetRow[], seed: number, tokenizer: Tokenizer) {
  const cfg = parseTrainConfig({ stages: [{ name: 'rl', kind: 'rl', steps: 1 }] }).stages[0]!;
  const t0 = performance.now();
  // The rows carry their prompts as token ids; the tokenizer decodes the responses for the rewards.
  const r = await rollout(model, rows, { tokenizer, samplesPerPrompt: SAMPLES, maxNewTokens: NEW_TOKENS, temperature: 1, seed, stopTokenIds: [] });
  const t1 = performance.now();
  await score(r.samples, [accuracyReward({ weight: 0.8 }), formatReward({ weight: 0.2 })], { step: 1 });
  const t2 = performance.now();
  advantages(r.samples, cfg.algorithm, SAMPLES);
  const metrics = rolloutMetrics(r.samples, new Set([1, 2, 3]));
  const t3 = performance.now();
  await policyUpdate(model, optimizer, r.samples, { algorithm: cfg.algorithm, microBatchTokens: 8192, temperature: 1, maxLength: NEW_TOKENS });
  const t4 = performance.now();
  // The TypeScript calls policyUpdate made, again on the same data.
  const cu = responseOffsets(r.samples);
  const logprobs = concat(r.samples, (s) => s.logprobs);
  const t5 = performance.now();
  packSequences(r.samples);
  rl.policyLoss({ kind: 'ppo', logprobs, oldLogprobs: logprobs, advantages: concat(r.samples, (s) => s.advantages!), cuSeqlens: cu, entropy: concat(r.samples, (s) => s.entropy), entropyCoef: 0 });
  const t6 = performance.now();
  const tsUpdate = t6 - t5;
  return {
    rolloutMs: t1 - t0, rewardMs: t2 - t1, tsMs: t3 - t2 + tsUpdate, engineUpdateMs: t4 - t3 - tsUpdate, totalMs: t4 - t0, metrics,
    tokens: r.samples.reduce((n, s) => n + s.promptIds.length + s.responseIds.length, 0),
  };
}

async function benchModel(bm: BenchModel) {
  using e = Engine.create({ device: 'cpu', seed: 1 });
  using model = VisionLanguageModel.create(e, bm.config, { seed: 1, imageContextTokenId: bm.imageContextTokenId, warn: () => undefined });
  const v = (bm.config.vision_config as { image_size: number }), vocab = (bm.config.llm_config as { vocab_size: number }).vocab_size;
  const perTile = 64, pixels = 3 * v.image_size * v.image_size;
  let state = 12345;
  const next = () => ((state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const rows: DatasetRow[] = Array.from({ length: PROMPTS }, (_, i) => {
    const image = i % 2 === 0;
    const ids = Array.from({ length: PROMPT_TOKENS - (image ? perTile : 0) }, () => Math.floor(next() * (vocab - 2)));
    const inputIds = Int32Array.from(image ? [...ids.slice(0, 8), ...new Array<number>(perTile).fill(bm.imageContextTokenId), ...ids.slice(8)] : ids);
    return { question: 'q', answer: '1', inputIds, ...(image ? { pixelValues: Float32Array.from({ length: pixels }, () => next() - 0.5) } : {}) };
  });
  const optimizer = new AdamW(model, { lr: 1e-5 });
  const runs = [];
  const tokenizer = await Tokenizer.load(packagedTokenizerDir());
  for (let i = 0; i < 4; i++) runs.push(await step(model, optimizer, rows, i, tokenizer));
  optimizer.dispose();
  const m = runs.slice(1);
  const row = {
    model: bm.name, parameters: model.numParameters(), rolloutMs: median(m.map((x) => x.rolloutMs)), rewardMs: median(m.map((x) => x.rewardMs)),
    tsMs: median(m.map((x) => x.tsMs)), engineUpdateMs: median(m.map((x) => x.engineUpdateMs)), totalMs: median(m.map((x) => x.totalMs)),
    tokens: m[0]!.tokens,
  };
  return { ...row, tsShare: row.tsMs / (row.totalMs - row.rewardMs) };
}

const rows = [];
for (const bm of [TINY, SMALL]) rows.push(await benchModel(bm));
const id = runIdentity();
const table = [
  '| model | parameters | step ms | rollout ms | rewards ms | TypeScript ms | engine update ms | TypeScript share (rewards excluded) |',
  '| --- | --- | --- | --- | --- | --- | --- | --- |',
  ...rows.map((r) => `| ${r.model} | ${(r.parameters / 1e6).toFixed(1)}M | ${r.totalMs.toFixed(0)} | ${r.rolloutMs.toFixed(0)} | ${r.rewardMs.toFixed(1)} | ${r.tsMs.toFixed(1)} | ${r.engineUpdateMs.toFixed(0)} | ${(100 * r.tsShare).toFixed(2)}% |`),
].join('\n');
console.log(`GRPO step, ${PROMPTS} prompts × ${SAMPLES} samples, ${PROMPT_TOKENS}-token prompts, ${NEW_TOKENS} new tokens (${id.machine})\n${table}`);
if (process.argv.includes('--save')) {
  mkdirSync('bench/results', { recursive: true });
  const base = `bench/results/train-${id.machine}-${id.date.slice(0, 10)}`;
  const cpu = devices()[0]!;
  const where = `${id.date}, commit ${id.commit}, ${cpu.name} (${cpu.kind === 'cpu' ? cpu.threads : 0} threads)`;
  writeFileSync(`${base}.json`, `${JSON.stringify({ ...id, cpu: cpu.name, command: 'npm run bench:train -- --save', rows }, null, 2)}\n`);
  writeFileSync(`${base}.md`, `# bench:train — ${id.date.slice(0, 10)}\n\n${where}\n\nCommand: \`npm run bench:train -- --save\`\n\n${table}\n`);
}

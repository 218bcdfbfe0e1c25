// The training configuration: one object (a YAML or JSON file, or built in code) describing
// the model, the tokenizer, the data, the stages (cold-start SFT, RL, connector-only tuning...)
// and checkpointing. Validated with zod: an unknown key (a typo) or a bad value fails with
// R1VError('CONFIG') naming its path (e.g. `stages[1].algorithm.clipHigh`). Every key has a
// default except the few that say what to train; docs/config.md lists every key.
import { promises as fsp } from 'node:fs';
import path from 'node:path';

import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

import { R1VError } from '../core/errors.js';
import { DEFAULT_CRITICAL_WORDS } from '../rl/critical-tokens.js';

const positiveInt = z.number().int().positive();
const nonNegativeInt = z.number().int().nonnegative();
const finite = z.number().refine(Number.isFinite, 'must be finite');
const probability = z.number().min(0).max(1);

const trainable = z.strictObject({
  vision: z.boolean().default(true).describe('train the ViT'),
  connector: z.boolean().default(true).describe('train the MLP connector'),
  language: z.boolean().default(true).describe('train the language model'),
}).describe('which parts of the model train in this stage (the connector-only stage: vision and language false)');

const optimizer = z.strictObject({
  lr: z.number().min(0).default(1e-5).describe('peak learning rate'),
  betas: z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]).default([0.9, 0.999]).describe('AdamW β1, β2'),
  eps: z.number().positive().default(1e-8).describe('AdamW epsilon'),
  weightDecay: z.number().min(0).default(0.01).describe('decoupled weight decay of matrices and embeddings'),
  maxGradNorm: z.number().positive().optional().describe('clip gradients to this global L2 norm (none when absent)'),
  schedule: z.enum(['constant', 'linear', 'cosine']).default('constant').describe('learning-rate schedule over the stage'),
  warmupSteps: nonNegativeInt.default(0).describe('steps of linear warmup'),
  minLr: z.number().min(0).default(0).describe('final rate of linear/cosine decay'),
});

const batch = z.strictObject({
  prompts: positiveInt.default(8).describe('dataset rows per step (RL: prompts; SFT: examples)'),
  samplesPerPrompt: positiveInt.default(8).describe('RL: responses generated per prompt (the GRPO group size)'),
  microBatchTokens: positiveInt.default(8192).describe('most tokens per forward/backward; larger batches accumulate gradients'),
});

const rollout = z.strictObject({
  maxNewTokens: positiveInt.default(256).describe('most tokens generated per response'),
  temperature: z.number().positive().default(1).describe('sampling temperature (also the temperature of the training logprobs)'),
  topP: z.number().gt(0).max(1).default(1).describe('nucleus sampling mass'),
  topK: nonNegativeInt.default(0).describe('keep the top-k tokens (0 = off)'),
  stopStrings: z.array(z.string().min(1)).default([]).describe('stop a response once its text contains one of these'),
});

const kl = z.strictObject({
  kind: z.enum(['k1', 'k2', 'k3']).default('k3').describe('KL estimator'),
  coef: z.number().min(0).describe('KL coefficient β'),
  mode: z.enum(['loss', 'reward']).default('loss').describe("'loss': β·KL added to the loss; 'reward': β·KL per token subtracted from the rewards"),
});

const algorithm = z.strictObject({
  advantage: z.enum(['grpo', 'rloo', 'reinforce++', 'gae']).default('grpo').describe('advantage estimator'),
  scaleByStd: z.boolean().default(true).describe('GRPO: divide by the group std (false = Dr.GRPO)'),
  gamma: z.number().min(0).max(1).default(1).describe('GAE discount'),
  lambda: z.number().min(0).max(1).default(1).describe('GAE λ'),
  loss: z.enum(['ppo', 'gspo', 'pg']).default('ppo').describe('policy loss'),
  clipLow: z.number().min(0).lt(1).default(0.2).describe('PPO clip below 1'),
  clipHigh: z.number().min(0).default(0.2).describe('PPO clip above 1 (DAPO clip-higher: larger than clipLow)'),
  dualClip: z.number().gt(1).optional().describe('dual-clip bound c of the loss of negative advantages'),
  kl: kl.optional().describe('KL to the stage\'s starting weights (a frozen reference model is kept only when this is set)'),
  entropyCoef: z.number().min(0).default(0).describe('entropy bonus coefficient'),
  aggregation: z.enum(['token-mean', 'seq-mean-token-sum', 'seq-mean-token-mean', 'seq-mean-token-sum-norm']).default('seq-mean-token-mean')
    .describe('how per-token losses are aggregated'),
  ppoEpochs: positiveInt.default(1).describe('updates per rollout batch (1 = on-policy, R1V3\'s choice)'),
  miniBatches: positiveInt.default(1).describe('optimizer steps per epoch (the rollout batch split by prompt groups)'),
});

const critic = z.strictObject({
  lr: z.number().min(0).default(1e-5).describe('critic learning rate'),
  clip: z.number().positive().default(0.2).describe('value clip range'),
  coef: z.number().positive().default(1).describe('scale of the value loss'),
  maxGradNorm: z.number().positive().optional().describe('critic gradient clipping'),
}).describe('PPO with GAE: the critic (a copy of the policy with a value head)');

const reward = z.strictObject({
  name: z.string().min(1).describe("'accuracy', 'format', or the name of a reward function passed to Trainer.create"),
  weight: finite.default(1).describe('its weight in the total reward'),
});

const dynamicSampling = z.strictObject({
  enabled: z.boolean().default(false).describe('DAPO: drop groups whose rewards are all equal and draw more prompts'),
  maxDraws: positiveInt.default(3).describe('most extra draws of prompts per step to fill the batch'),
});

const overlong = z.strictObject({
  enabled: z.boolean().default(false).describe('DAPO soft overlong punishment'),
  buffer: positiveInt.default(32).describe('tokens before maxNewTokens where the penalty ramps from 0 to −penalty'),
  penalty: z.number().min(0).default(1).describe('penalty at maxNewTokens'),
});

const stage = z.strictObject({
  name: z.string().min(1).describe('the stage\'s name (in metrics and checkpoints)'),
  kind: z.enum(['sft', 'rl']).describe("'sft' (cross-entropy on reference responses) or 'rl'"),
  steps: positiveInt.describe('optimizer steps of this stage'),
  trainable: trainable.prefault({}),
  optimizer: optimizer.prefault({}),
  batch: batch.prefault({}),
  rollout: rollout.prefault({}),
  algorithm: algorithm.prefault({}),
  critic: critic.optional(),
  rewards: z.array(reward).default([{ name: 'accuracy', weight: 0.8 }, { name: 'format', weight: 0.2 }])
    .describe('reward functions and weights (R1V3: 0.8·accuracy + 0.2·format)'),
  dynamicSampling: dynamicSampling.prefault({}),
  overlong: overlong.prefault({}),
  curriculum: z.enum(['none', 'difficulty']).default('none').describe("'difficulty': rows in increasing `difficulty` order"),
  data: z.string().min(1).optional().describe('this stage\'s training data (JSONL), instead of data.train'),
});

const validation = z.strictObject({
  prompts: nonNegativeInt.default(16).describe('rows of data.val (else data.train) evaluated at each checkpoint (0 = none)'),
  maxNewTokens: positiveInt.optional().describe('default: the stage\'s rollout.maxNewTokens'),
  temperature: z.number().min(0).default(0).describe('0 = greedy'),
});

export const trainConfigSchema = z.strictObject({
  seed: nonNegativeInt.default(0).describe('seed of initialisation, data order and sampling'),
  device: z.string().default('auto').describe("'auto', 'cpu' or 'cuda:N'"),
  dtype: z.enum(['f32', 'bf16']).optional().describe('compute dtype (default: f32 on the CPU, bf16 on CUDA)'),
  model: z.strictObject({
    path: z.string().min(1).optional().describe('a Hugging Face model directory to start from, or a run directory (its latest checkpoint)'),
    config: z.union([z.string().min(1), z.record(z.string(), z.unknown())]).optional().describe('or: a config.json (path or object) for a randomly initialised model'),
    recompute: z.boolean().default(false).describe('recompute activations in backward (less memory)'),
    imageContextTokenId: nonNegativeInt.optional().describe('default: the tokenizer\'s <IMG_CONTEXT> id'),
  }).refine((m) => m.path === undefined || m.config === undefined, 'give model.path or model.config, not both').prefault({}),
  tokenizer: z.string().min(1).default('qwen3').describe("a tokenizer directory, or 'qwen3' (the packaged Qwen3 tokenizer)"),
  data: z.strictObject({
    train: z.string().min(1).optional().describe('training rows (JSONL): { question, answer, image?, images?, response?, difficulty? }'),
    val: z.string().min(1).optional().describe('validation rows (JSONL)'),
    systemPrompt: z.string().optional().describe('a system message before every question'),
  }).prefault({}),
  stages: z.array(stage).min(1).describe('the stages, in order; each starts from the previous one\'s final weights'),
  checkpoint: z.strictObject({
    every: positiveInt.default(50).describe('steps between checkpoints (each stage also ends with one)'),
    keepLast: nonNegativeInt.default(3).describe('retention: the newest N (0 = all)'),
    keepBest: nonNegativeInt.default(1).describe('retention: and the best M by selectBy'),
    selectBy: z.string().min(1).default('val_accuracy').describe("'critical_entropy', 'val_accuracy' or any metric name"),
    mode: z.enum(['max', 'min']).default('max').describe('whether a larger selectBy is better'),
    validation: validation.prefault({}),
  }).prefault({}),
  criticalWords: z.array(z.string().min(1)).default([...DEFAULT_CRITICAL_WORDS])
    .describe('critical reasoning words whose tokens\' entropy is tracked'),
  run: z.strictObject({
    dir: z.string().min(1).default('runs/latest').describe('run directory: checkpoints, metrics.jsonl, the resolved config'),
  }).prefault({}),
});

/** A validated training configuration with every default filled in. */
export type TrainConfig = z.infer<typeof trainConfigSchema>;
/** What a config file or object may say (defaults omitted). */
export type TrainConfigInput = z.input<typeof trainConfigSchema>;
export type StageConfig = TrainConfig['stages'][number];

function formatPath(p: readonly PropertyKey[]): string {
  return p.reduce<string>((acc, k) => (typeof k === 'number' ? `${acc}[${k}]` : acc ? `${acc}.${String(k)}` : String(k)), '');
}

/**
 * Validates a config object (as parsed from YAML/JSON, or built in code). Every problem is
 * reported in one R1VError('CONFIG'), each line naming its key path.
 */
export function parseTrainConfig(input: unknown, source = 'config'): TrainConfig {
  const r = trainConfigSchema.safeParse(input);
  if (!r.success) {
    const lines = r.error.issues.slice(0, 20).map((i) => {
      if (i.code === 'unrecognized_keys') return i.keys.map((k) => `${formatPath([...i.path, k])}: unknown key`).join('\n  ');
      return `${formatPath(i.path) || '(top level)'}: ${i.message}`;
    });
    const more = r.error.issues.length > 20 ? `\n  … and ${r.error.issues.length - 20} more` : '';
    throw new R1VError('CONFIG', `${source}: invalid training config:\n  ${lines.join('\n  ')}${more}`);
  }
  const config = r.data;
  config.stages.forEach((s, i) => {
    const where = `${source}: stages[${i}]`;
    if (s.kind === 'rl' && s.algorithm.advantage === 'gae' && !s.critic) {
      throw new R1VError('CONFIG', `${where}.critic: advantage 'gae' needs a critic (add critic: {})`);
    }
    if (s.kind === 'rl' && s.algorithm.advantage !== 'gae' && s.critic) {
      throw new R1VError('CONFIG', `${where}.critic: a critic is used only with advantage 'gae'`);
    }
    if (s.kind === 'rl' && s.rewards.length === 0) throw new R1VError('CONFIG', `${where}.rewards: an RL stage needs at least one reward`);
    if (s.algorithm.miniBatches > s.batch.prompts) {
      throw new R1VError('CONFIG', `${where}.algorithm.miniBatches (${s.algorithm.miniBatches}) exceeds batch.prompts (${s.batch.prompts})`);
    }
    if (s.optimizer.schedule !== 'constant' && s.steps <= s.optimizer.warmupSteps) {
      throw new R1VError('CONFIG', `${where}.optimizer.warmupSteps (${s.optimizer.warmupSteps}) must be below steps (${s.steps}) for a '${s.optimizer.schedule}' schedule`);
    }
    if (s.overlong.enabled && s.overlong.buffer > s.rollout.maxNewTokens) {
      throw new R1VError('CONFIG', `${where}.overlong.buffer (${s.overlong.buffer}) exceeds rollout.maxNewTokens (${s.rollout.maxNewTokens})`);
    }
  });
  const names = config.stages.map((s) => s.name);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup) throw new R1VError('CONFIG', `${source}: stages: the name '${dup}' is used twice`);
  return config;
}

/**
 * Reads a training config from a YAML or JSON file (by extension; YAML is a superset of JSON,
 * so anything else is read as YAML) and validates it. Relative paths inside it (model.path,
 * model.config, tokenizer, data.*, stages[].data, run.dir) are resolved against the file's
 * directory.
 */
export async function loadTrainConfig(file: string): Promise<TrainConfig> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (error) {
    throw new R1VError('IO', `cannot read the training config ${file}: ${(error as Error).message}`, { cause: error });
  }
  let raw: unknown;
  try {
    raw = file.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    throw new R1VError('CONFIG', `${file}: not valid ${file.endsWith('.json') ? 'JSON' : 'YAML'}: ${(error as Error).message}`, { cause: error });
  }
  return resolvePaths(parseTrainConfig(raw, file), path.dirname(path.resolve(file)));
}

/** The config with its relative file paths made absolute against `base`. */
export function resolvePaths(config: TrainConfig, base: string): TrainConfig {
  const abs = (p: string | undefined) => (p === undefined ? undefined : path.resolve(base, p));
  const c = structuredClone(config);
  if (c.model.path) c.model.path = abs(c.model.path);
  if (typeof c.model.config === 'string') c.model.config = abs(c.model.config);
  if (c.tokenizer !== 'qwen3') c.tokenizer = abs(c.tokenizer)!;
  if (c.data.train) c.data.train = abs(c.data.train);
  if (c.data.val) c.data.val = abs(c.data.val);
  for (const s of c.stages) if (s.data) s.data = abs(s.data);
  c.run.dir = abs(c.run.dir)!;
  return c;
}

/** One documented key of the training config. */
export interface ConfigKey {
  /** e.g. 'stages[].algorithm.clipHigh'. */
  path: string;
  /** e.g. 'number', "'grpo' | 'rloo'", 'boolean', 'string[]'. */
  type: string;
  /** JSON of the default, or '' when there is none (required, or absent means off). */
  default: string;
  description: string;
  required: boolean;
}

type ZodNode = { _zod: { def: Record<string, unknown> & { type: string } }; description?: string; shape?: Record<string, ZodNode> };

/** Every key of the training config with its type, default and description (what docs/config.md lists). */
export function configKeys(): ConfigKey[] {
  const out: ConfigKey[] = [];
  const typeOf = (n: ZodNode): string => {
    const d = n._zod.def;
    switch (d.type) {
      case 'enum': return Object.values(d.entries as Record<string, string>).map((v) => `'${v}'`).join(' \\| ');
      case 'array': return `${typeOf(d.element as ZodNode)}[]`;
      case 'tuple': return `[${(d.items as ZodNode[]).map(typeOf).join(', ')}]`;
      case 'union': return (d.options as ZodNode[]).map(typeOf).join(' \\| ');
      case 'record': return 'object';
      case 'literal': return JSON.stringify((d.values as unknown[])[0]);
      case 'default': case 'prefault': case 'optional': return typeOf(d.innerType as ZodNode);
      default: return d.type;
    }
  };
  const walk = (n: ZodNode, path: string, description: string | undefined, fallback: unknown, required: boolean): void => {
    const d = n._zod.def;
    const desc = n.description ?? description;
    if (d.type === 'default' || d.type === 'prefault') return walk(d.innerType as ZodNode, path, desc, d.defaultValue, false);
    if (d.type === 'optional') return walk(d.innerType as ZodNode, path, desc, fallback, false);
    const element = d.type === 'array' ? (d.element as ZodNode) : undefined;
    const inner = element?._zod.def.type === 'object' ? element : d.type === 'object' ? n : undefined;
    if (!inner || d.type === 'object') {
      if (d.type !== 'object') {
        out.push({ path, type: typeOf(n), default: fallback === undefined ? '' : JSON.stringify(fallback), description: desc ?? '', required });
      } else if (desc) {
        out.push({ path, type: 'object', default: '', description: desc, required });
      }
    } else {
      out.push({ path, type: 'object[]', default: fallback === undefined ? '' : JSON.stringify(fallback), description: desc ?? '', required });
    }
    if (inner) {
      const prefix = d.type === 'array' ? `${path}[]` : path;
      for (const [k, v] of Object.entries(inner.shape!)) walk(v, prefix ? `${prefix}.${k}` : k, undefined, undefined, true);
    }
  };
  walk(trainConfigSchema as unknown as ZodNode, '', undefined, undefined, true);
  return out;
}

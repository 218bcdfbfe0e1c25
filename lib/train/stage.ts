// What one stage trains with: the parts set trainable, a fresh AdamW with its learning-rate
// schedule, the rewards, the data order, and — only when the stage needs them — a frozen
// reference model (KL) and a critic with its own optimizer (PPO with GAE). A stage starts
// from the weights the previous stage ended with; its reference model is those weights, kept
// under the run directory so a resumed run gets the same one.
import { promises as fsp } from 'node:fs';
import path from 'node:path';

import { R1VError } from '../core/errors.js';
import type { DatasetRow } from '../data/dataset.js';
import { VisionLanguageModel } from '../model/model.js';
import { AdamW } from '../optim/adamw.js';
import { learningRateSchedule, type LearningRateSchedule } from '../optim/schedule.js';
import { accuracyReward, formatReward, type Reward, type RewardFn } from '../rewards/index.js';
import type { StageConfig } from './config.js';
import { RowSampler } from './state.js';

export interface StageContext {
  index: number;
  config: StageConfig;
  optimizer: AdamW;
  schedule: LearningRateSchedule;
  sampler: RowSampler;
  rewards: Reward[];
  reference?: VisionLanguageModel | undefined;
  critic?: { model: VisionLanguageModel; optimizer: AdamW } | undefined;
  dispose(): void;
}

/** The rewards a stage names: the built-ins 'accuracy' and 'format', or user functions passed by name. */
export function stageRewards(stage: StageConfig, user: ReadonlyMap<string, RewardFn>, where: string): Reward[] {
  return stage.rewards.map((r, i) => {
    const fn = user.get(r.name);
    if (fn) return { name: r.name, weight: r.weight, fn };
    if (r.name === 'accuracy') return accuracyReward({ weight: r.weight });
    if (r.name === 'format') return formatReward({ weight: r.weight });
    throw new R1VError('CONFIG', `${where}.rewards[${i}].name: no reward named '${r.name}' (built in: accuracy, format; pass others to Trainer.create({ rewards }))`);
  });
}

export interface StageSetup {
  index: number;
  config: StageConfig;
  model: VisionLanguageModel;
  rows: readonly DatasetRow[];
  seed: number;
  userRewards: ReadonlyMap<string, RewardFn>;
  /** Where the stage keeps what a resume needs beyond checkpoints (its reference weights). */
  stageDir: string;
  /** A checkpoint to resume from (inside this stage), or undefined at the stage's start. */
  resumeFrom?: string | undefined;
}

async function exists(p: string): Promise<boolean> {
  return fsp.access(p).then(() => true, () => false);
}

export async function openStage(s: StageSetup): Promise<StageContext> {
  const c = s.config, where = `stages[${s.index}]`;
  s.model.setTrainable(c.trainable);
  const optimizer = new AdamW(s.model, { lr: c.optimizer.lr, betas: c.optimizer.betas, eps: c.optimizer.eps, weightDecay: c.optimizer.weightDecay });
  const owned: Array<{ dispose(): void }> = [optimizer];
  try {
    if (s.resumeFrom) await optimizer.load(s.resumeFrom);
    const schedule = learningRateSchedule({
      kind: c.optimizer.schedule, lr: c.optimizer.lr, warmupSteps: c.optimizer.warmupSteps, totalSteps: c.steps, minLr: c.optimizer.minLr,
    }, `${where}.optimizer`);
    const rewards = c.kind === 'rl' ? stageRewards(c, s.userRewards, where) : [];
    let reference: VisionLanguageModel | undefined;
    if (c.kind === 'rl' && c.algorithm.kl) {
      const dir = path.join(s.stageDir, 'reference');
      if (!(await exists(path.join(dir, 'config.json')))) {
        if (s.resumeFrom) throw new R1VError('IO', `${where}: the reference weights ${dir} are missing; cannot resume a stage with KL without them`);
        await s.model.save(dir);
      }
      reference = await VisionLanguageModel.load(s.model.engine, dir, { dtype: s.model.dtype, ...(s.model.imageContextTokenId !== undefined ? { imageContextTokenId: s.model.imageContextTokenId } : {}) });
      reference.setTrainable(() => false);
      owned.push(reference);
    }
    let critic: StageContext['critic'];
    if (c.kind === 'rl' && c.critic) {
      const criticDir = s.resumeFrom ? path.join(s.resumeFrom, 'critic') : undefined;
      let model: VisionLanguageModel;
      if (criticDir) {
        model = await VisionLanguageModel.load(s.model.engine, criticDir, { dtype: s.model.dtype, valueHead: true, warn: () => undefined });
      } else {
        // A critic starts as a copy of the policy at the stage's start, with a fresh value head.
        const dir = path.join(s.stageDir, `critic-init-${process.pid}`);  // one per process (data-parallel ranks share the run directory)
        await s.model.save(dir);
        model = await VisionLanguageModel.load(s.model.engine, dir, { dtype: s.model.dtype, valueHead: true, warn: () => undefined });
        await fsp.rm(dir, { recursive: true, force: true });
      }
      if (s.model.imageContextTokenId !== undefined) model.imageContextTokenId = s.model.imageContextTokenId;
      owned.push(model);
      const criticOptimizer = new AdamW(model, { lr: c.critic.lr, weightDecay: c.optimizer.weightDecay });
      owned.push(criticOptimizer);
      if (criticDir) await criticOptimizer.load(criticDir);
      critic = { model, optimizer: criticOptimizer };
    }
    return {
      index: s.index, config: c, optimizer, schedule, rewards, reference, critic,
      sampler: new RowSampler(s.rows, s.seed + s.index, c.curriculum),
      dispose: () => owned.forEach((o) => o.dispose()),
    };
  } catch (error) {
    owned.forEach((o) => o.dispose());
    throw error;
  }
}

// The trainer: runs the stages of a training config (cold-start SFT, RL, connector-only RL, ...)
// step by step, each step built from the exported pieces (steps.ts, update.ts):
//   SFT: rows → prompt + reference response → sftUpdate
//   RL:  rows → rollout → score → [dynamic sampling: more rows] → [reference logprobs, old
//        logprobs, critic values] → advantages → policyUpdate (+ criticUpdate) per mini-batch
// and writes metrics.jsonl, checkpoints (CheckpointStore: manifest, latest, retention by
// selectBy, validation metrics at each) and, when stopped (AbortSignal), a final checkpoint.
// Trainer.resume(runDir) continues from the latest checkpoint and reaches the parameters an
// uninterrupted run would have (bitwise on the CPU with the same thread count).
// With a communicator (data parallelism, data-parallel.ts) every rank runs this same trainer on
// its share of each step's batch; rank 0 writes the run directory, checkpoints and metrics, and
// a stop asked on any rank stops every rank after the same step.
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';

import { Engine } from '../core/engine.js';
import { R1VError } from '../core/errors.js';
import { Dataset, type DatasetRow } from '../data/dataset.js';
import { ImageProcessor } from '../data/image.js';
import { Tokenizer, tokenizerDir } from '../data/tokenizer.js';
import { VisionLanguageModel } from '../model/model.js';
import type { RewardFn } from '../rewards/index.js';
import { criticalTokenIds } from '../rl/index.js';
import { CheckpointStore, type CheckpointInfo } from './checkpoints.js';
import { parseTrainConfig, type TrainConfig, type TrainConfigInput } from './config.js';
import { DataParallel, mainFirst, rankDevice, type Collectives, type DataParallelOptions } from './data-parallel.js';
import { evaluateRows, evaluationMetrics } from './evaluate.js';
import { formatStep, MetricsLog, type StepMetrics } from './metrics.js';
import { openStage, type StageContext } from './stage.js';
import { readState, writeState, type TrainerState } from './state.js';
import { rlStep, sftStep, type StepContext } from './step.js';

export interface TrainerOptions {
  /** The training config (validated here), as from loadTrainConfig or written in code. */
  config: TrainConfig | TrainConfigInput;
  /** The model to train (default: from config.model, on `engine`). */
  model?: VisionLanguageModel;
  /** Default: a new engine on config.device with config.seed. */
  engine?: Engine;
  tokenizer?: Tokenizer;
  /** Training rows (default: config.data.train). */
  dataset?: Dataset | readonly unknown[];
  /** Training rows of particular stages, by stage name (default: the stage's `data` file, else the training rows). */
  stageDatasets?: Record<string, Dataset | readonly unknown[]>;
  /** Validation rows (default: config.data.val, else the training rows). */
  valDataset?: Dataset | readonly unknown[];
  /** User reward functions, by the name a stage's rewards use. */
  rewards?: Record<string, RewardFn>;
  /** Stops training after the current step (a final checkpoint is written). */
  signal?: AbortSignal;
  /** Receives a line per step, checkpoint and notable event. Default: nothing. */
  log?: (line: string) => void;
  /** Whether `log` receives the line of every step (formatStep); false leaves only checkpoints and events. Default true. */
  logSteps?: boolean;
  /**
   * Data parallelism: this process is one rank of a job (e.g. `Communicator.world()` in a process
   * started by mpirun). Every rank runs the same config; with a CUDA device each rank uses the GPU
   * of its local rank. Rank 0 writes the run directory; `log` receives step lines on rank 0 only.
   */
  communicator?: Collectives;
  /** With a communicator: how the gradients travel (bucket size). */
  dataParallel?: DataParallelOptions;
}

/** What train() returns. */
export interface TrainSummary {
  steps: number;
  stopped: boolean;
  checkpoints: CheckpointInfo[];
  best: CheckpointInfo | undefined;
  runDir: string;
}

const RESOLVED_CONFIG = 'config.json';

function hashConfig(config: TrainConfig): string {
  return createHash('sha256').update(JSON.stringify(config)).digest('hex');
}

async function loadRows(given: Dataset | readonly unknown[] | undefined, file: string | undefined, what: string): Promise<Dataset | undefined> {
  if (given instanceof Dataset) return given;
  if (given) return Dataset.fromRows(given);
  return file ? Dataset.fromJsonl(file) : undefined;
}

export class Trainer {
  readonly #ownsEngine: boolean;
  readonly #dp: DataParallel | undefined;
  #stage: StageContext | undefined;
  #closed = false;

  private constructor(
    readonly config: TrainConfig,
    readonly engine: Engine,
    readonly model: VisionLanguageModel,
    readonly tokenizer: Tokenizer,
    readonly trainData: Dataset,
    readonly validation: readonly DatasetRow[],
    readonly store: CheckpointStore,
    readonly metricsLog: MetricsLog,
    readonly state: TrainerState,
    readonly options: Omit<TrainerOptions, 'config'>,
    ownsEngine: boolean,
  ) {
    this.#ownsEngine = ownsEngine;
    this.#dp = parallelOf(options);
  }

  get runDir(): string {
    return this.config.run.dir;
  }

  /** Starts a new run in config.run.dir (which must not hold checkpoints already: resume it instead). */
  static async create(options: TrainerOptions): Promise<Trainer> {
    const config = parseTrainConfig(options.config);
    const runDir = path.resolve(config.run.dir);
    config.run.dir = runDir;
    const store = await mainFirst(parallelOf(options), async (isMain) => {
      const opened = await CheckpointStore.open(runDir, storeOptions(config));
      if (isMain && opened.list().length > 0) {
        throw new R1VError('IO', `the run directory ${runDir} already holds checkpoints: resume it (Trainer.resume / r1v train --resume ${runDir}) or choose another run.dir`);
      }
      if (isMain) await fsp.writeFile(path.join(runDir, RESOLVED_CONFIG), `${JSON.stringify(config, null, 2)}\n`);
      return opened;
    });
    const state: TrainerState = {
      format: 'r1v-trainer-state', version: 1, step: 0, stage: 0, stageName: config.stages[0]!.name, stageStep: 0,
      cursor: { epoch: 0, index: 0 }, history: [], configHash: hashConfig(config),
    };
    return Trainer.#assemble(config, options, store, state, undefined);
  }

  /**
   * Continues the run in runDir from its latest complete checkpoint. Pass again what the run
   * was given in code (dataset, rewards, ...); the config is the run's own (runDir/config.json).
   */
  static async resume(runDir: string, options: Omit<TrainerOptions, 'config'> = {}): Promise<Trainer> {
    const file = path.join(path.resolve(runDir), RESOLVED_CONFIG);
    let raw: unknown;
    try {
      raw = JSON.parse(await fsp.readFile(file, 'utf8'));
    } catch (error) {
      throw new R1VError('IO', `cannot resume ${runDir}: ${file} is missing or unreadable (${(error as Error).message})`, { cause: error });
    }
    const config = parseTrainConfig(raw, file);
    const store = await mainFirst(parallelOf(options), () => CheckpointStore.open(config.run.dir, storeOptions(config)));
    const latest = await store.latest();
    if (!latest) throw new R1VError('IO', `cannot resume ${runDir}: it has no complete checkpoint`);
    const state = await readState(latest.dir);
    if (state.configHash !== hashConfig(config)) throw new R1VError('CONFIG', `cannot resume ${runDir}: its config.json changed since ${latest.dir} was written`);
    return Trainer.#assemble(config, options, store, state, latest.dir);
  }

  static async #assemble(config: TrainConfig, o: Omit<TrainerOptions, 'config'>, store: CheckpointStore, state: TrainerState, from: string | undefined): Promise<Trainer> {
    const ownsEngine = !o.engine && !o.model;
    const engine = o.model?.engine ?? o.engine ?? Engine.create({ device: rankDevice(config.device, o.communicator) as 'auto', seed: config.seed });
    const dp = parallelOf(o);
    try {
      const tokenizer = o.tokenizer ?? await Tokenizer.load(tokenizerDir(config.tokenizer));
      const modelOptions = {
        ...(config.dtype ? { dtype: config.dtype } : {}), recompute: config.model.recompute,
        imageContextTokenId: config.model.imageContextTokenId ?? tokenizer.imageContextTokenId,
      };
      let model: VisionLanguageModel;
      if (from) model = await VisionLanguageModel.load(engine, from, modelOptions);
      else if (o.model) model = o.model;
      else if (config.model.path) model = await VisionLanguageModel.load(engine, await modelDirectory(config.model.path), modelOptions);
      else if (config.model.config !== undefined) {
        const json = typeof config.model.config === 'string' ? JSON.parse(await fsp.readFile(config.model.config, 'utf8')) : config.model.config;
        model = VisionLanguageModel.create(engine, json, { ...modelOptions, seed: config.seed });
      } else throw new R1VError('CONFIG', 'no model: set model.path or model.config, or pass Trainer.create({ model })');
      const train = await loadRows(o.dataset, config.data.train, 'data.train');
      if (!train) throw new R1VError('CONFIG', 'no training data: set data.train or pass Trainer.create({ dataset })');
      const val = (await loadRows(o.valDataset, config.data.val, 'data.val')) ?? train;
      dp?.broadcastParameters(model);
      const metricsLog = await MetricsLog.open(path.join(config.run.dir, 'metrics.jsonl'), !dp || dp.isMain ? state.step : undefined);
      const t = new Trainer(config, engine, model, tokenizer, train, val.rows.slice(0, config.checkpoint.validation.prompts),
        store, metricsLog, state, o, ownsEngine);
      if (from && state.stage < config.stages.length) t.#stage = await t.#openStage(state.stage, state.stageStep > 0 ? from : undefined);
      t.#log(`${from ? `resumed from ${from}` : 'new run'} in ${config.run.dir}: ${train.length} training rows${train.skipped.length ? ` (${train.skipped.length} skipped)` : ''}, `
        + `model ${(model.numParameters() / 1e6).toFixed(1)}M parameters on ${engine.device.id}`);
      return t;
    } catch (error) {
      if (ownsEngine) engine.dispose();
      throw error;
    }
  }

  #log(line: string): void {
    const rank = this.#dp?.rank ?? 0;
    this.options.log?.(rank === 0 ? line : `[rank ${rank}] ${line}`);
  }

  /** Whether training should stop: the signal, on any rank (decided alike by every rank). */
  async #stopRequested(): Promise<boolean> {
    const here = this.options.signal?.aborted === true;
    return this.#dp ? this.#dp.any(here) : here;
  }

  async #openStage(index: number, resumeFrom: string | undefined): Promise<StageContext> {
    const c = this.config.stages[index]!;
    const given = this.options.stageDatasets?.[c.name];
    const rows = given ? (await loadRows(given, undefined, `stage ${c.name}`))!.rows : c.data ? (await Dataset.fromJsonl(c.data)).rows : this.trainData.rows;
    // rank 0 first: it writes the stage's reference weights, which the other ranks then read
    const ctx = await mainFirst(this.#dp, () => openStage({
      index, config: c, model: this.model, rows, seed: this.config.seed, userRewards: new Map(Object.entries(this.options.rewards ?? {})),
      stageDir: path.join(this.runDir, 'stages', `${index}-${c.name}`), resumeFrom,
    }));
    if (ctx.critic) this.#dp?.broadcastParameters(ctx.critic.model);
    // ZeRO-1: each rank keeps its parameters' optimizer state (a resumed state was loaded whole)
    for (const o of [ctx.optimizer, ctx.critic?.optimizer]) if (o) this.#dp?.shardOptimizer(o);
    if (resumeFrom) ctx.sampler.restore(this.state.cursor);
    return ctx;
  }

  /** Runs the remaining steps of every stage, yielding each step's metrics. */
  async *run(): AsyncGenerator<StepMetrics, TrainSummary> {
    let stopped = await this.#stopRequested();
    while (this.state.stage < this.config.stages.length && !stopped) {
      this.#stage ??= await this.#openStage(this.state.stage, undefined);
      const stage = this.#stage, c = stage.config;
      while (this.state.stageStep < c.steps && !(stopped = await this.#stopRequested())) {
        const started = performance.now();
        const m = await this.#step(stage);
        if (m === undefined) {  // stopped during the step (one process: the signal reaches the step): it is discarded
          stopped = true;
          break;
        }
        this.state.step += 1;
        this.state.stageStep += 1;
        this.state.cursor = stage.sampler.cursor;
        const last = this.state.stageStep === c.steps;
        let checkpointMs = 0;
        if (last || this.state.step % this.config.checkpoint.every === 0) checkpointMs = await this.#checkpoint();
        const metrics: StepMetrics = {
          step: this.state.step, stage: c.name, stageStep: this.state.stageStep, kind: c.kind, ...m,
          time_checkpoint_ms: checkpointMs, time_step_ms: performance.now() - started,
        };
        const isMain = !this.#dp || this.#dp.isMain;
        if (isMain) await this.metricsLog.append(metrics);
        if (isMain && this.options.logSteps !== false) this.#log(formatStep(metrics));
        yield metrics;
      }
      if (this.state.stageStep < c.steps) break;
      stage.dispose();
      this.#stage = undefined;
      this.state.stage += 1;
      this.state.stageStep = 0;
      this.state.cursor = { epoch: 0, index: 0 };
      this.state.stageName = this.config.stages[this.state.stage]?.name ?? 'done';
    }
    if (stopped && this.#stage && this.state.stageStep > 0 && this.state.history.at(-1)?.step !== this.state.step) await this.#checkpoint();
    // the other ranks see the checkpoints rank 0 wrote
    const store = await mainFirst(this.#dp, async (isMain) => (isMain ? this.store : CheckpointStore.open(this.runDir, storeOptions(this.config))));
    return { steps: this.state.step, stopped, checkpoints: store.list(), best: store.best(), runDir: this.runDir };
  }

  /** Runs to the end (or until stopped), calling onStep with each step's metrics. */
  async train(options: { onStep?: (metrics: StepMetrics) => void | Promise<void> } = {}): Promise<TrainSummary> {
    const it = this.run();
    for (;;) {
      const r = await it.next();
      if (r.done) return r.value;
      await options.onStep?.(r.value);
    }
  }

  async #step(stage: StageContext): Promise<Record<string, number> | undefined> {
    const c = stage.config;
    stage.optimizer.lr = stage.schedule(this.state.stageStep);
    const ctx: StepContext = {
      model: this.model, tokenizer: this.tokenizer, stage, step: this.state.step + 1, seed: this.config.seed,
      // with data parallelism a stop is decided between steps, by every rank alike
      systemPrompt: this.config.data.systemPrompt, signal: this.#dp ? undefined : this.options.signal, criticalIds: this.criticalIds,
      imageProcessor: this.#imageProcessor(), log: (line) => this.#log(line), dp: this.#dp,
    };
    const m = c.kind === 'sft' ? await sftStep(ctx) : await rlStep(ctx);
    return m === undefined ? undefined : { ...m, lr: stage.optimizer.lr };
  }

  #criticalIds: Set<number> | undefined;
  /** Token ids that begin a critical word (config.criticalWords). */
  get criticalIds(): Set<number> {
    this.#criticalIds ??= criticalTokenIds(this.tokenizer, this.config.criticalWords);
    return this.#criticalIds;
  }

  #processor: ImageProcessor | undefined;
  #imageProcessor(): ImageProcessor | undefined {
    if (!this.model.config.imageTiling) return undefined;
    this.#processor ??= ImageProcessor.fromConfig(this.model.config);
    return this.#processor;
  }

  /**
   * Greedy (or config.checkpoint.validation.temperature) answers to validation rows: accuracy,
   * format rate, mean response length and the critical-token entropy (evaluate.ts).
   */
  async evaluate(rows: readonly DatasetRow[] = this.validation, options: { maxNewTokens?: number; temperature?: number } = {}): Promise<Record<string, number>> {
    const v = this.config.checkpoint.validation;
    const stage = this.config.stages[Math.min(this.state.stage, this.config.stages.length - 1)]!;
    // with data parallelism each rank answers its share of the rows; the metrics are over all of them
    const mine = this.#dp?.share(rows.length);
    const r = await evaluateRows(this.model, mine ? mine.map((i) => rows[i]!) : rows, {
      tokenizer: this.tokenizer, criticalIds: this.criticalIds, maxNewTokens: options.maxNewTokens ?? v.maxNewTokens ?? stage.rollout.maxNewTokens,
      temperature: options.temperature ?? v.temperature, seed: this.config.seed, systemPrompt: this.config.data.systemPrompt,
      imageProcessor: this.#imageProcessor(), step: this.state.step,
    });
    if (!mine || !this.#dp) return r.metrics;
    for (const s of r.samples) s.group = mine[s.group]!;
    const [skipped] = await this.#dp.sum([r.skipped.length]) as [number];
    return evaluationMetrics(await this.#dp.gatherSamples(r.samples), skipped, this.criticalIds);
  }

  async #checkpoint(): Promise<number> {
    const started = performance.now();
    const metrics = await this.evaluate();
    const stage = this.#stage;
    // a sharded optimizer state is gathered whole for the save, on every rank, and let go after
    const optimizers = stage ? [stage.optimizer, stage.critic?.optimizer].filter((o) => o !== undefined) : [];
    for (const o of optimizers) await o.gatherShards();
    // rank 0 writes the checkpoint; the others wait for it (and fail with it)
    try {
      const info = await mainFirst(this.#dp, async (isMain) => (!isMain ? undefined : this.store.save(this.state.step, async (dir) => {
        await this.model.save(dir);
        if (stage) await stage.optimizer.save(dir);
        if (stage?.critic) {
          await stage.critic.model.save(path.join(dir, 'critic'));
          await stage.critic.optimizer.save(path.join(dir, 'critic'));
        }
        await writeState(dir, { ...this.state, history: [...this.state.history, { step: this.state.step, stage: this.state.stageName, metrics }] });
      }, metrics)));
      this.state.history.push({ step: this.state.step, stage: this.state.stageName, metrics });
      if (info) this.#log(`checkpoint ${info.dir}: ${Object.entries(metrics).map(([k, x]) => `${k} ${x.toFixed(3)}`).join(', ')}`);
    } finally {
      for (const o of optimizers) o.releaseForeign();
    }
    return performance.now() - started;
  }

  /** Frees the stage's models and optimizer, and the engine when the trainer made it. */
  dispose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stage?.dispose();
    this.#stage = undefined;
    if (this.#ownsEngine) this.engine.dispose();
  }
}

/** A model directory, or a run directory (then its latest complete checkpoint). */
async function modelDirectory(dir: string): Promise<string> {
  const isRun = await fsp.access(path.join(dir, 'checkpoints')).then(() => true, () => false);
  if (!isRun) return dir;
  const latest = await (await CheckpointStore.open(dir)).latest();
  if (!latest) throw new R1VError('IO', `model.path ${dir} is a run directory without a complete checkpoint`);
  return latest.dir;
}

function parallelOf(o: { communicator?: Collectives | undefined; dataParallel?: DataParallelOptions | undefined }): DataParallel | undefined {
  return o.communicator && o.communicator.worldSize > 1 ? new DataParallel(o.communicator, o.dataParallel) : undefined;
}

function storeOptions(config: TrainConfig) {
  const c = config.checkpoint;
  return { keepLast: c.keepLast, keepBest: c.keepBest, selectBy: c.selectBy, mode: c.mode };
}

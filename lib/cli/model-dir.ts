// What `--checkpoint DIR` (eval, generate) and `r1v inspect DIR` point at: a model directory
// (config.json + weights: a Hugging Face model or a trainer checkpoint) or a run directory (then
// its latest checkpoint). A checkpoint inside a run (<run>/checkpoints/step-N) brings the run's
// config along: its tokenizer, seed, system prompt and critical words are the commands'
// defaults. Nothing here writes to these directories (a trainer may be running in them).
import { promises as fsp } from 'node:fs';
import path from 'node:path';

import { Engine } from '../core/engine.js';
import { Tokenizer, tokenizerDir } from '../data/tokenizer.js';
import { VisionLanguageModel } from '../model/model.js';
import { latestCheckpointDir } from '../train/checkpoints.js';
import { loadTrainConfig, type TrainConfig } from '../train/config.js';
import { InputError } from './failures.js';

export interface ModelDir {
  /** The model directory (absolute). */
  dir: string;
  /** The run it belongs to: the run directory given, or the one around <run>/checkpoints/step-N. */
  runDir?: string;
  /** That run's config (runDir/config.json). */
  runConfig?: TrainConfig;
}

async function kindOf(p: string): Promise<'directory' | 'file' | 'other' | undefined> {
  try {
    const st = await fsp.stat(p);
    return st.isDirectory() ? 'directory' : st.isFile() ? 'file' : 'other';
  } catch {
    return undefined;
  }
}

/** A run directory holds checkpoints/ and the run's config.json. */
async function isRunDir(dir: string): Promise<boolean> {
  return (await kindOf(path.join(dir, 'checkpoints'))) === 'directory' && (await kindOf(path.join(dir, 'config.json'))) === 'file';
}

async function withRun(dir: string, runDir: string): Promise<ModelDir> {
  return { dir, runDir, runConfig: await loadTrainConfig(path.join(runDir, 'config.json')) };
}

/** Resolves a directory given on the command line (`label` names where, e.g. '--checkpoint'); InputError when it is neither kind. */
export async function resolveModelDir(given: string, label: string): Promise<ModelDir> {
  const abs = path.resolve(given);
  const what = `${label} ${given}`;
  const kind = await kindOf(abs);
  if (kind === undefined) throw new InputError(`${what}: no such directory`);
  if (kind !== 'directory') throw new InputError(`${what}: not a directory`);
  if (await isRunDir(abs)) {
    const latest = await latestCheckpointDir(abs);
    if (latest === undefined) throw new InputError(`${what}: the run directory has no checkpoint yet`);
    return withRun(latest, abs);
  }
  if ((await kindOf(path.join(abs, 'config.json'))) !== 'file') {
    throw new InputError(`${what}: neither a model directory (no config.json) nor a run directory (no checkpoints/)`);
  }
  const parent = path.dirname(abs);
  if (path.basename(parent) === 'checkpoints' && (await isRunDir(path.dirname(parent)))) return withRun(abs, path.dirname(parent));
  return { dir: abs };
}

/**
 * The tokenizer directory for a model: `flag` (a directory or 'qwen3') when given, else the
 * model directory when it holds tokenizer.json, else the run's tokenizer.
 */
export async function chooseTokenizerDir(source: ModelDir, flag: string | undefined): Promise<string> {
  if (flag !== undefined) return tokenizerDir(flag);
  if ((await kindOf(path.join(source.dir, 'tokenizer.json'))) === 'file') return source.dir;
  if (source.runConfig) return tokenizerDir(source.runConfig.tokenizer);
  throw new InputError(`no tokenizer for ${source.dir}: it has no tokenizer.json and belongs to no run; pass --tokenizer DIR or --tokenizer qwen3`);
}

/** A loaded model with its tokenizer and engine; dispose frees both. */
export interface LoadedModel extends Disposable {
  source: ModelDir;
  engine: Engine;
  model: VisionLanguageModel;
  tokenizer: Tokenizer;
  tokenizerDir: string;
}

/** Loads the tokenizer and the model of `source` on `device`. */
export async function loadModel(source: ModelDir, o: { tokenizer?: string | undefined; device: string; seed: number }): Promise<LoadedModel> {
  const dir = await chooseTokenizerDir(source, o.tokenizer);
  const engine = Engine.create({ device: o.device as 'auto', seed: o.seed });
  try {
    const tokenizer = await Tokenizer.load(dir);
    const model = await VisionLanguageModel.load(engine, source.dir, {
      imageContextTokenId: source.runConfig?.model.imageContextTokenId ?? tokenizer.imageContextTokenId,
    });
    const dispose = () => {
      model.dispose();
      engine.dispose();
    };
    return { source, engine, model, tokenizer, tokenizerDir: dir, [Symbol.dispose]: dispose };
  } catch (error) {
    engine.dispose();
    throw error;
  }
}

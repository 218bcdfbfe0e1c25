// A Hugging Face model directory: config.json plus the weights (model.safetensors, or shards
// listed by model.safetensors.index.json). Loading checks the checkpoint against the tensors the
// config implies (names, shapes, float dtypes) before any weight is read, and reports every
// mismatch in one error; saving writes config.json and the weights.
import { promises as fsp } from 'node:fs';
import path from 'node:path';

import { R1VError } from '../core/errors.js';
import { toFloat32 } from './half.js';
import { openCheckpoint, writeCheckpoint, type WriteCheckpointOptions } from './checkpoint.js';
import type { SafetensorsWriteTensor } from './safetensors.js';

/** A tensor the config implies. */
export interface ExpectedTensor {
  readonly name: string;
  readonly shape: readonly number[];
}

export interface LoadTensorsOptions {
  /** Names the checkpoint may hold beyond `expected`, each with why it is skipped (a warning says so). */
  redundant?: ReadonlyMap<string, string>;
  /** Expected names the checkpoint may lack (the caller initialises them). */
  optional?: ReadonlySet<string>;
  /** Receives warnings. */
  warn: (message: string) => void;
  /** Prefix of error messages. */
  fn: string;
}

/** The parsed config.json of a model directory; R1VError('IO') naming the file when unreadable. */
export async function readConfigJson(dir: string, fn: string): Promise<unknown> {
  const file = path.join(dir, 'config.json');
  try {
    return JSON.parse(await fsp.readFile(file, 'utf8'));
  } catch (error) {
    throw new R1VError('IO', `${fn}: cannot read ${file}: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * Reads every expected tensor of the checkpoint in dir as f32 (f32, bf16, f16 or f64 on disk),
 * one at a time, handing each to `take` in `expected` order. Missing, unexpected or wrong-shaped
 * tensors fail with one R1VError('IO') listing them all, before any data is read. Returns the
 * optional names the checkpoint lacked.
 */
export async function loadTensors(dir: string, expected: readonly ExpectedTensor[], options: LoadTensorsOptions,
  take: (name: string, data: Float32Array) => void): Promise<string[]> {
  const { fn, warn } = options;
  await using checkpoint = await openCheckpoint(dir);
  const wanted = new Map(expected.map((s) => [s.name, s]));
  const redundant = options.redundant ?? new Map<string, string>();
  const optional = options.optional ?? new Set<string>();
  const absent: string[] = [];
  const names = new Set(checkpoint.names());
  const problems: string[] = [];
  const ignored: string[] = [];
  for (const spec of expected) {
    if (!names.has(spec.name)) {
      if (optional.has(spec.name)) absent.push(spec.name);
      else problems.push(`missing ${spec.name} ${JSON.stringify(spec.shape)}`);
      continue;
    }
    const entry = checkpoint.entry(spec.name);
    if (entry.shape.length !== spec.shape.length || entry.shape.some((d, i) => d !== spec.shape[i])) {
      problems.push(`${spec.name} has shape ${JSON.stringify(entry.shape)}, the config needs ${JSON.stringify(spec.shape)}`);
    } else if (!['F32', 'BF16', 'F16', 'F64'].includes(entry.dtype)) {
      problems.push(`${spec.name} has dtype ${entry.dtype} (not a float)`);
    }
  }
  for (const name of names) {
    if (wanted.has(name)) continue;
    if (redundant.has(name)) ignored.push(name);
    else problems.push(`unexpected ${name}`);
  }
  if (problems.length > 0) {
    throw new R1VError('IO', `${fn}(${dir}): the checkpoint does not match its config (${problems.length} problems):\n  ${problems.join('\n  ')}`);
  }
  for (const name of ignored) warn(`${fn}(${dir}): ignoring ${name} (${redundant.get(name)})`);
  for (const spec of expected) if (names.has(spec.name)) take(spec.name, toFloat32(await checkpoint.readTensor(spec.name)));
  return absent;
}

/** Writes config.json (pretty JSON) and the weights into dir. */
export async function saveModelDirectory(dir: string, config: unknown, tensors: readonly SafetensorsWriteTensor[],
  options: WriteCheckpointOptions & { fn: string }): Promise<void> {
  const { fn, ...write } = options;
  await fsp.mkdir(dir, { recursive: true });
  await writeCheckpoint(dir, tensors, write);
  const configPath = path.join(dir, 'config.json');
  try {
    await fsp.writeFile(`${configPath}.tmp`, `${JSON.stringify(config, null, 2)}\n`);
    await fsp.rename(`${configPath}.tmp`, configPath);
  } catch (error) {
    throw new R1VError('IO', `${fn}: writing ${configPath} failed: ${(error as Error).message}`, { cause: error });
  }
}

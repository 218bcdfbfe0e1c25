// A Hugging Face model directory: config.json plus the weights (model.safetensors, or shards
// listed by model.safetensors.index.json). Loading checks the checkpoint against the tensors the
// config implies (names, shapes, float dtypes) before any weight is read, reports the mismatches
// in one bounded error, and refuses non-finite weights unless asked.
//
// Saving holds the directory's save lock and commits the weights first (checkpoint.ts). The
// weights' commit carries the config: the file that commits (model.safetensors' `__metadata__`
// or the index's "metadata") holds `r1v_config` (the exact config.json text), its sha256, the
// sha256 of the config.json the save replaces (`r1v_previous_config_sha256`) and `r1v_state_id`
// (the id of the saved weights, which an optimizer state records to pair with them). config.json
// is written after that commit. On load, config.json is used as it is, except when its bytes
// are exactly the config the last save replaced — that save was killed (or is running) between
// its two commits — or it is missing: then the config stored with the weights is used, with a
// warning. A hand-edited config.json is honoured (if it does not fit the weights, the shape check
// says so).
import { createHash } from 'node:crypto';
import path from 'node:path';

import { R1VError } from '../core/errors.js';
import { type Checkpoint, commitCheckpoint, openCheckpoint, planCheckpoint, readCommitMetadata, type WriteCheckpointOptions } from './checkpoint.js';
import { withDirectoryLock } from './dir-lock.js';
import { ensureDirectory, entryExists, parseJsonFile, readRegularFile, writeAll, writeFileAtomically } from './files.js';
import { countNonFinite, MAX_HOST_BYTES, toFloat32 } from './half.js';
import { ProblemList } from './problems.js';
import type { SafetensorsWriteTensor } from './safetensors.js';

export const CONFIG_FILE = 'config.json';
const MAX_CONFIG_BYTES = 16_000_000;
const CONFIG_KEY = 'r1v_config';
const CONFIG_SHA_KEY = 'r1v_config_sha256';
const PREVIOUS_CONFIG_SHA_KEY = 'r1v_previous_config_sha256';
const STATE_ID_KEY = 'r1v_state_id';

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
  /** Load NaN and ±Inf weights instead of refusing them. */
  allowNonFinite?: boolean;
  /** Receives warnings. */
  warn: (message: string) => void;
  /** Prefix of error messages. */
  fn: string;
}

function sha256(bytes: string | Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** An opened model directory: the config to use, the weights, and the id they were saved with. */
export interface ModelDirectory extends AsyncDisposable {
  readonly dir: string;
  /** The parsed config (config.json, or the one stored with the weights; see the top of this file). */
  readonly config: unknown;
  /** Where the config came from, for messages. */
  readonly configSource: string;
  /** `r1v_state_id` of the weights, when they were saved with one. */
  readonly stateId: string | undefined;
  readonly checkpoint: Checkpoint;
}

/** The config stored with the committed weights, checked against its recorded sha256. */
function storedConfig(metadata: Readonly<Record<string, unknown>>, file: string, fn: string):
  { text: string; sha: string; previousSha: unknown } | undefined {
  const text = metadata[CONFIG_KEY];
  if (typeof text !== 'string') return undefined;
  const sha = sha256(text);
  if (metadata[CONFIG_SHA_KEY] !== sha) {
    throw new R1VError('IO', `${fn}: ${file}: the stored config does not match its recorded sha256 (the metadata was altered)`);
  }
  return { text, sha, previousSha: metadata[PREVIOUS_CONFIG_SHA_KEY] };
}

/**
 * Opens a model directory: reads config.json (first, so a save committing meanwhile is seen as
 * an interrupted one), then the checkpoint, and decides which config belongs to the weights.
 * Close it (`await using`) to release the checkpoint's files.
 */
export async function openModelDirectory(dir: string, fn: string, warn: (message: string) => void): Promise<ModelDirectory> {
  const configPath = path.join(dir, CONFIG_FILE);
  const configBytes = await entryExists(configPath, fn)
    ? await readRegularFile(configPath, fn, { inside: dir, maxBytes: MAX_CONFIG_BYTES })
    : undefined;
  const checkpoint = await openCheckpoint(dir);
  try {
    const commitFile = checkpoint.commitFile;
    const stored = storedConfig(checkpoint.metadata, commitFile, fn);
    let bytes: Uint8Array, configSource = configPath;
    if (configBytes === undefined) {
      if (!stored) throw new R1VError('IO', `${fn}: cannot read ${configPath}: there is no such file`);
      warn(`${fn}(${dir}): config.json is missing; using the config the weights were saved with (${commitFile})`);
      bytes = Buffer.from(stored.text, 'utf8');
      configSource = `${commitFile} (stored config)`;
    } else if (stored && sha256(configBytes) !== stored.sha && sha256(configBytes) === stored.previousSha) {
      warn(`${fn}(${dir}): config.json is the config the last save replaced (that save was interrupted, or is running now); `
        + `using the config the weights were saved with (${commitFile})`);
      bytes = Buffer.from(stored.text, 'utf8');
      configSource = `${commitFile} (stored config)`;
    } else {
      bytes = configBytes;
    }
    const config = parseJsonFile(bytes, configSource, fn);
    const id = checkpoint.metadata[STATE_ID_KEY];
    return {
      dir, config, configSource, checkpoint, stateId: typeof id === 'string' ? id : undefined,
      [Symbol.asyncDispose]: () => checkpoint.close(),
    };
  } catch (error) {
    await checkpoint.close();
    throw error;
  }
}

/**
/**
 * The model files in dir and the weights id they were saved with: undefined when dir has no
 * model files, `id` undefined when they carry none (saved by another tool or an older version).
 */
export async function savedModelState(dir: string): Promise<{ file: string; id: string | undefined } | undefined> {
  const committed = await readCommitMetadata(dir);
  if (!committed) return undefined;
  const id = committed.metadata[STATE_ID_KEY];
  return { file: committed.file, id: typeof id === 'string' ? id : undefined };
}

/**
 * Reads every expected tensor of the checkpoint as f32 (f32, bf16, f16 or f64 on disk), one at a
 * time, handing each to `take` in `expected` order. Missing, unexpected, wrong-shaped or too large
 * tensors fail with one R1VError('IO') listing them (at most 20, then a count), before any data
 * is read. Non-finite values fail likewise after reading (naming the tensors), unless
 * allowNonFinite; `take` then sees no tensor after the first bad one. Returns the optional names
 * the checkpoint lacked.
 */
export async function loadTensors(checkpoint: Checkpoint, expected: readonly ExpectedTensor[], options: LoadTensorsOptions,
  take: (name: string, data: Float32Array) => void): Promise<string[]> {
  const { fn, warn } = options;
  const dir = checkpoint.dir;
  const wanted = new Map(expected.map((s) => [s.name, s]));
  const redundant = options.redundant ?? new Map<string, string>();
  const optional = options.optional ?? new Set<string>();
  const absent: string[] = [];
  const names = new Set(checkpoint.names());
  const problems = new ProblemList();
  const ignored: string[] = [];
  for (const spec of expected) {
    if (!names.has(spec.name)) {
      if (optional.has(spec.name)) absent.push(spec.name);
      else problems.add(`missing ${spec.name} ${JSON.stringify(spec.shape)}`);
      continue;
    }
    const entry = checkpoint.entry(spec.name);
    const f32Bytes = entry.shape.reduce((a, d) => a * d, 4);
    if (entry.shape.length !== spec.shape.length || entry.shape.some((d, i) => d !== spec.shape[i])) {
      problems.add(`${spec.name} has shape ${JSON.stringify(entry.shape)}, the config needs ${JSON.stringify(spec.shape)}`);
    } else if (!['F32', 'BF16', 'F16', 'F64'].includes(entry.dtype)) {
      problems.add(`${spec.name} has dtype ${entry.dtype} (not a float)`);
    } else if (f32Bytes > MAX_HOST_BYTES) {
      problems.add(`${spec.name} needs ${f32Bytes} bytes as f32, more than the largest buffer this host can hold (${MAX_HOST_BYTES})`);
    }
  }
  for (const name of names) {
    if (wanted.has(name)) continue;
    if (redundant.has(name)) ignored.push(name);
    else problems.add(`unexpected ${name}`);
  }
  if (problems.count > 0) {
    throw new R1VError('IO', `${fn}(${dir}): the checkpoint does not match its config (${problems.count} problems):${problems}`);
  }
  for (const name of ignored) warn(`${fn}(${dir}): ignoring ${name} (${redundant.get(name)})`);
  const bad = new ProblemList();
  for (const spec of expected) {
    if (!names.has(spec.name)) continue;
    const data = toFloat32(await checkpoint.readTensor(spec.name));
    const { count, first } = options.allowNonFinite ? { count: 0, first: -1 } : countNonFinite(data);
    if (count > 0) bad.add(`${spec.name}: ${count} of ${data.length} values (first at index ${first})`);
    else if (bad.count === 0) take(spec.name, data);
  }
  if (bad.count > 0) {
    throw new R1VError('IO', `${fn}(${dir}): ${bad.count} tensor(s) hold non-finite values (NaN or ±Inf); `
      + `pass { allowNonFinite: true } to load them anyway:${bad}`);
  }
  return absent;
}

export interface SaveModelDirectoryOptions extends WriteCheckpointOptions {
  /** Prefix of error messages. */
  fn: string;
  /** The id of the weights saved (recorded as r1v_state_id). */
  stateId: string;
}

/**
 * Writes config.json (pretty JSON) and the weights into dir (created if needed), under its save
 * lock: the weights first, carrying the config (see the top of this file), then config.json.
 */
export async function saveModelDirectory(dir: string, config: unknown, tensors: readonly SafetensorsWriteTensor[],
  options: SaveModelDirectoryOptions): Promise<void> {
  const { fn, stateId, ...write } = options;
  const plan = planCheckpoint(tensors, write, fn);
  const text = `${JSON.stringify(config, null, 2)}\n`;
  const configPath = path.join(dir, CONFIG_FILE);
  await ensureDirectory(dir, fn);
  await withDirectoryLock(dir, fn, async () => {
    // A config.json that is not a readable regular file inside dir is replaced without a record.
    const previous = await readRegularFile(configPath, fn, { inside: dir, maxBytes: MAX_CONFIG_BYTES }).catch(() => undefined);
    await commitCheckpoint(dir, plan, {
      [CONFIG_KEY]: text,
      [CONFIG_SHA_KEY]: sha256(text),
      ...(previous ? { [PREVIOUS_CONFIG_SHA_KEY]: sha256(previous) } : {}),
      [STATE_ID_KEY]: stateId,
    }, fn);
    await writeFileAtomically(configPath, (fh) => writeAll(fh, Buffer.from(text, 'utf8')), fn);
  });
}

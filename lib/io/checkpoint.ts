// Checkpoint directories in Hugging Face's layout: one `model.safetensors`, or shards listed by
// `model.safetensors.index.json` (weight_map: tensor name → shard file). Opened as one
// name → tensor map; written under the directory's save lock (dir-lock.ts) so that a kill at any
// moment leaves the old or the new checkpoint loadable, never neither, never a mix.
//
// Reading prefers the index. Only regular files inside the directory are read (files.ts).
//
// Writing, and the commit point of each layout:
// - single file: model.safetensors is written through a unique temporary and renamed into place
//   (with no index there, the rename is the commit); with an index there the old checkpoint still
//   loads, and removing the index is the commit.
// - sharded: shards go under new unique names (`model-<8 hex>-0000i-of-0000n.safetensors`, so no
//   old shard is ever overwritten), are fsynced, the directory is fsynced, then the index is
//   written through a temporary and renamed over the old one: the commit. A stale
//   model.safetensors is removed after it.
// After the commit, stale files of earlier saves go: shards under either naming
// (`model-0000i-of-0000n.safetensors` or r1v's) that the new index does not list, and this
// module's temporaries. Shards an old index listed under other names are left in place.
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

import { R1VError } from '../core/errors.js';
import { withDirectoryLock } from './dir-lock.js';
import {
  commitRename, ensureDirectory, entryExists, isTemporaryName, parseJsonFile, randomToken, readRegularFile,
  removeFile, syncDirectory, temporaryBeside, writeAll, writeFileAtomically, writeNewFile,
} from './files.js';
import { clip, ProblemList } from './problems.js';
import {
  byteSize, checkWriteTensors, SafetensorsFile, serializeSafetensors,
  type SafetensorsEntry, type SafetensorsTensor, type SafetensorsWriteTensor,
} from './safetensors.js';

/** A checkpoint directory's single-file name, as Hugging Face names it. */
export const SINGLE_FILE = 'model.safetensors';
/** A sharded checkpoint directory's index (weight_map: tensor name → shard file name). */
export const INDEX_FILE = 'model.safetensors.index.json';
/** Largest index file read (Hugging Face's largest indexes are a few MB). */
const MAX_INDEX_BYTES = 100_000_000;
/** Shard names this module writes, and Hugging Face's: stale when no committed index lists them. */
const SHARD_NAME = /^model-(?:[0-9a-f]{8}-)?\d{5}-of-\d{5}\.safetensors$/;

/**
 * A checkpoint directory seen as one name → tensor map: either `model.safetensors` or the
 * shards listed by `model.safetensors.index.json` (its weight_map decides which shard holds each
 * name). All shard files stay open until {@link Checkpoint.close}.
 */
export class Checkpoint implements AsyncDisposable {
  private constructor(
    /** The checkpoint directory. */
    readonly dir: string,
    private readonly files: readonly SafetensorsFile[],
    private readonly byName: ReadonlyMap<string, SafetensorsFile>,
    /** The index's "metadata" object (e.g. total_size), or the single file's `__metadata__`. */
    readonly metadata: Readonly<Record<string, unknown>>,
    /** The file whose commit made this checkpoint: the index, or model.safetensors. */
    readonly commitFile: string,
  ) {}

  /** @internal use {@link openCheckpoint}. */
  static async open(dir: string): Promise<Checkpoint> {
    const committed = await readCommitted(dir);
    if (committed === undefined) {
      throw new R1VError('IO', `checkpoint ${dir}: neither ${INDEX_FILE} nor ${SINGLE_FILE} is there`);
    }
    if (committed.single) {
      const f = committed.single;
      return new Checkpoint(dir, [f], new Map(f.names().map((n) => [n, f])), f.metadata, committed.file);
    }
    const { file: indexPath, weightMap, metadata } = committed;
    const opened = new Map<string, SafetensorsFile>();
    try {
      const missing = new ProblemList();
      for (const s of new Set(weightMap.values())) {
        const shardPath = path.join(dir, s);
        if (!(await entryExists(shardPath, `checkpoint ${indexPath}`))) missing.add(s);
        else opened.set(s, await SafetensorsFile.open(shardPath, { inside: dir }));
      }
      if (missing.count > 0) throw new R1VError('IO', `checkpoint ${indexPath}: ${missing.count} shard file(s) missing:${missing}`);
      const byName = new Map<string, SafetensorsFile>();
      const absent = new ProblemList();
      for (const [name, shard] of weightMap) {
        const f = opened.get(shard)!;
        if (f.entries.has(name)) byName.set(name, f);
        else absent.add(`"${name}" (→ ${shard})`);
      }
      if (absent.count > 0) {
        throw new R1VError('IO', `checkpoint ${indexPath}: weight_map names ${absent.count} tensor(s) their shard lacks:${absent}`);
      }
      return new Checkpoint(dir, [...opened.values()], byName, metadata, indexPath);
    } catch (error) {
      await Promise.all([...opened.values()].map((f) => f.close()));
      throw error;
    }
  }

  /** Tensor names, in weight_map (or file) order. */
  names(): string[] {
    return [...this.byName.keys()];
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** The header entry for `name` (its `file` says which shard); R1VError('IO') when absent. */
  entry(name: string): SafetensorsEntry {
    return this.fileOf(name).entry(name);
  }

  /** Reads one tensor from its shard (see {@link SafetensorsFile.readTensor}). */
  async readTensor(name: string): Promise<SafetensorsTensor> {
    return this.fileOf(name).readTensor(name);
  }

  /** Closes every shard; idempotent. */
  async close(): Promise<void> {
    await Promise.all(this.files.map((f) => f.close()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private fileOf(name: string): SafetensorsFile {
    const f = this.byName.get(name);
    if (!f) throw new R1VError('IO', `checkpoint ${this.dir}: no tensor named "${name}"`);
    return f;
  }
}

function parseIndex(indexPath: string, bytes: Uint8Array): { weightMap: Map<string, string>; metadata: Record<string, unknown> } {
  const index = parseJsonFile(bytes, indexPath, 'checkpoint');
  const map = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    throw new R1VError('IO', `checkpoint ${indexPath}: "weight_map" is missing or not an object`);
  }
  const weightMap = new Map<string, string>();
  for (const [name, shard] of Object.entries(map)) {
    // Shards are plain file names beside the index; anything else could escape the directory.
    if (typeof shard !== 'string' || shard === '' || path.basename(shard) !== shard || shard === '.' || shard === '..'
      || shard.includes('\\') || shard.includes('\0')) {
      throw new R1VError('IO', `checkpoint ${indexPath}: weight_map["${clip(name, 200)}"] = ${clip(JSON.stringify(shard), 200)} is not a file name in the directory`);
    }
    weightMap.set(name, shard);
  }
  const meta = (index as { metadata?: unknown }).metadata;
  const metadata = typeof meta === 'object' && meta !== null && !Array.isArray(meta) ? meta as Record<string, unknown> : {};
  return { weightMap, metadata };
}

type Committed =
  | { file: string; single: SafetensorsFile; weightMap?: undefined; metadata: Readonly<Record<string, unknown>> }
  | { file: string; single?: undefined; weightMap: Map<string, string>; metadata: Readonly<Record<string, unknown>> };

/**
 * What the directory's commit point holds: the index (parsed) when there is one, else the single
 * file (opened; the caller closes it), else undefined.
 */
async function readCommitted(dir: string): Promise<Committed | undefined> {
  const indexPath = path.join(dir, INDEX_FILE);
  const where = `checkpoint ${dir}`;
  if (await entryExists(indexPath, where)) {
    const bytes = await readRegularFile(indexPath, 'checkpoint', { inside: dir, maxBytes: MAX_INDEX_BYTES });
    return { file: indexPath, ...parseIndex(indexPath, bytes) };
  }
  const single = path.join(dir, SINGLE_FILE);
  if (!(await entryExists(single, where))) return undefined;
  const f = await SafetensorsFile.open(single, { inside: dir });
  return { file: single, single: f, metadata: f.metadata };
}

/**
 * @internal The metadata of the file that commits the checkpoint in dir (the index's "metadata",
 * or model.safetensors' `__metadata__`) and that file's path; undefined when dir holds neither.
 */
export async function readCommitMetadata(dir: string): Promise<{ file: string; metadata: Readonly<Record<string, unknown>> } | undefined> {
  const committed = await readCommitted(dir);
  await committed?.single?.close();
  return committed && { file: committed.file, metadata: committed.metadata };
}

/** Opens a checkpoint directory: `model.safetensors.index.json` with its shards, else `model.safetensors`. */
export function openCheckpoint(dir: string): Promise<Checkpoint> {
  return Checkpoint.open(dir);
}

/** Options of {@link writeCheckpoint}. */
export interface WriteCheckpointOptions {
  /**
   * Largest tensor-data size of one shard in bytes (default 5e9, Hugging Face's "5GB"). When all
   * tensors fit, one `model.safetensors` is written; otherwise shards are filled in order and
   * `model.safetensors.index.json` lists them. A tensor larger than the limit gets a shard of its own.
   */
  maxShardBytes?: number;
  /** `__metadata__` written into every file (e.g. { format: 'pt' }). */
  metadata?: Record<string, string>;
}

/** @internal A checked checkpoint write: the tensors of each shard (one: a single file) and their total size. */
export interface CheckpointPlan {
  shards: SafetensorsWriteTensor[][];
  totalBytes: number;
  metadata: Record<string, string> | undefined;
}

/** @internal Checks the tensors and options of a checkpoint write and splits the tensors into shards. */
export function planCheckpoint(tensors: readonly SafetensorsWriteTensor[], options: WriteCheckpointOptions, where: string): CheckpointPlan {
  const maxShardBytes = options.maxShardBytes ?? 5e9;
  if (!(Number.isSafeInteger(maxShardBytes) && maxShardBytes > 0)) {
    throw new R1VError('ARGUMENT', `${where}: maxShardBytes must be a positive integer, got ${String(maxShardBytes)}`);
  }
  checkWriteTensors(tensors, where);
  const shards: SafetensorsWriteTensor[][] = [];
  let current: SafetensorsWriteTensor[] = [];
  let currentBytes = 0;
  let totalBytes = 0;
  for (const t of tensors) {
    const size = byteSize(t);
    if (current.length > 0 && currentBytes + size > maxShardBytes) {
      shards.push(current);
      current = [];
      currentBytes = 0;
    }
    current.push(t);
    currentBytes += size;
    totalBytes += size;
  }
  shards.push(current);
  return { shards, totalBytes, metadata: options.metadata };
}

/** Removes what earlier saves left: shards no committed index lists (none but `keep`) and temporaries. Best effort. */
async function removeStaleFiles(dir: string, keep: ReadonlySet<string>, where: string): Promise<void> {
  for (const name of await fsp.readdir(dir).catch(() => [] as string[])) {
    if (!keep.has(name) && (SHARD_NAME.test(name) || isTemporaryName(name))) {
      await removeFile(path.join(dir, name), where).catch(() => false);
    }
  }
}

/** Shard file names for this write, under a token no file in dir uses yet. */
async function newShardNames(dir: string, n: number): Promise<string[]> {
  const used = await fsp.readdir(dir);
  let token: string;
  do token = randomToken(4); while (used.some((name) => name.startsWith(`model-${token}-`)));
  const pad = (i: number): string => String(i).padStart(5, '0');
  return Array.from({ length: n }, (_, i) => `model-${token}-${pad(i + 1)}-of-${pad(n)}.safetensors`);
}

/**
 * @internal Writes a planned checkpoint into dir (which exists; the caller holds its save lock);
 * `commitMetadata` goes into the file that commits it (the single file's `__metadata__`, or the
 * index's "metadata"). See the top of this file for the order of writes.
 */
export async function commitCheckpoint(dir: string, plan: CheckpointPlan, commitMetadata: Record<string, string>, where: string): Promise<void> {
  const indexPath = path.join(dir, INDEX_FILE);
  const singlePath = path.join(dir, SINGLE_FILE);
  if (plan.shards.length === 1) {
    const fill = serializeSafetensors(plan.shards[0]!, { ...plan.metadata, ...commitMetadata }, where);
    await writeFileAtomically(singlePath, fill, where);
    // While an index is there the old checkpoint loads (the index is preferred): removing it commits.
    if (await removeFile(indexPath, where)) await syncDirectory(dir, where);
    await removeStaleFiles(dir, new Set(), where);
    return;
  }
  const names = await newShardNames(dir, plan.shards.length);
  const weightMap: Record<string, string> = {};
  const indexTmp = temporaryBeside(indexPath);
  try {
    for (const [i, shard] of plan.shards.entries()) {
      await writeNewFile(path.join(dir, names[i]!), serializeSafetensors(shard, plan.metadata, where), where);
      for (const t of shard) weightMap[t.name] = names[i]!;
    }
    await syncDirectory(dir, where);
    const index = { metadata: { total_size: plan.totalBytes, ...commitMetadata }, weight_map: weightMap };
    await writeNewFile(indexTmp, (fh) => writeAll(fh, Buffer.from(`${JSON.stringify(index, null, 2)}\n`, 'utf8')), where);
  } catch (error) {
    await Promise.all(names.map((n) => removeFile(path.join(dir, n), where).catch(() => false)));
    throw error;
  }
  await commitRename(indexTmp, indexPath, where);
  await removeFile(singlePath, where);
  await removeStaleFiles(dir, new Set(names), where);
}

/**
 * Writes a checkpoint directory (created if needed) readable by {@link openCheckpoint} and by
 * Hugging Face loaders, under the directory's save lock (a concurrent save into it is refused
 * with R1VError('IO')). A kill at any moment leaves the old or the new checkpoint; see the top
 * of this file.
 */
export async function writeCheckpoint(
  dir: string,
  tensors: readonly SafetensorsWriteTensor[],
  options: WriteCheckpointOptions = {},
): Promise<void> {
  const where = `writeCheckpoint(${dir})`;
  const plan = planCheckpoint(tensors, options, where);
  await ensureDirectory(dir, where);
  await withDirectoryLock(dir, where, () => commitCheckpoint(dir, plan, {}, where));
}

// Checkpoint directories in Hugging Face's layout: one `model.safetensors`, or shards
// `model-0000i-of-0000n.safetensors` listed by `model.safetensors.index.json` (weight_map:
// tensor name → shard file). Opened as one name → tensor map; written shard by shard.
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

import { R1VError } from '../core/errors.js';
import {
  byteSize, checkWriteTensors, SafetensorsFile, writeAll, writeAtomically, writeSafetensors,
  type SafetensorsEntry, type SafetensorsTensor, type SafetensorsWriteTensor,
} from './safetensors.js';

/** A checkpoint directory's single-file name, as Hugging Face names it. */
export const SINGLE_FILE = 'model.safetensors';
/** A sharded checkpoint directory's index (weight_map: tensor name → shard file name). */
export const INDEX_FILE = 'model.safetensors.index.json';

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
  ) {}

  /** @internal use {@link openCheckpoint}. */
  static async open(dir: string): Promise<Checkpoint> {
    const indexPath = path.join(dir, INDEX_FILE);
    let indexText: string | undefined;
    try {
      indexText = await fsp.readFile(indexPath, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new R1VError('IO', `checkpoint ${indexPath}: cannot read: ${(error as Error).message}`, { cause: error });
      }
    }
    if (indexText === undefined) {
      const single = path.join(dir, SINGLE_FILE);
      try {
        await fsp.access(single);
      } catch (error) {
        throw new R1VError('IO', `checkpoint ${dir}: neither ${INDEX_FILE} nor ${SINGLE_FILE} is there`, { cause: error });
      }
      const f = await SafetensorsFile.open(single);
      return new Checkpoint(dir, [f], new Map(f.names().map((n) => [n, f])), f.metadata);
    }
    const { weightMap, metadata } = parseIndex(indexPath, indexText);
    const shardNames = [...new Set(weightMap.values())];
    const missing: string[] = [];
    for (const s of shardNames) {
      try {
        await fsp.access(path.join(dir, s));
      } catch {
        missing.push(s);
      }
    }
    if (missing.length > 0) {
      throw new R1VError('IO', `checkpoint ${indexPath}: shard file(s) missing: ${missing.join(', ')}`);
    }
    const opened = new Map<string, SafetensorsFile>();
    try {
      for (const s of shardNames) opened.set(s, await SafetensorsFile.open(path.join(dir, s)));
      const byName = new Map<string, SafetensorsFile>();
      const absent: string[] = [];
      for (const [name, shard] of weightMap) {
        const f = opened.get(shard)!;
        if (f.entries.has(name)) byName.set(name, f);
        else absent.push(`"${name}" (→ ${shard})`);
      }
      if (absent.length > 0) {
        const shown = absent.slice(0, 10).join(', ') + (absent.length > 10 ? `, … ${absent.length - 10} more` : '');
        throw new R1VError('IO', `checkpoint ${indexPath}: weight_map names tensors their shard lacks: ${shown}`);
      }
      return new Checkpoint(dir, [...opened.values()], byName, metadata);
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

function parseIndex(indexPath: string, text: string): { weightMap: Map<string, string>; metadata: Record<string, unknown> } {
  let index: unknown;
  try {
    index = JSON.parse(text);
  } catch (error) {
    throw new R1VError('IO', `checkpoint ${indexPath}: not valid JSON: ${(error as Error).message}`, { cause: error });
  }
  const map = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    throw new R1VError('IO', `checkpoint ${indexPath}: "weight_map" is missing or not an object`);
  }
  const weightMap = new Map<string, string>();
  for (const [name, shard] of Object.entries(map)) {
    // Shards are plain file names beside the index; anything else could escape the directory.
    if (typeof shard !== 'string' || shard === '' || path.basename(shard) !== shard || shard === '..' || shard.includes('\\')) {
      throw new R1VError('IO', `checkpoint ${indexPath}: weight_map["${name}"] = ${JSON.stringify(shard)} is not a file name in the directory`);
    }
    weightMap.set(name, shard);
  }
  const meta = (index as { metadata?: unknown }).metadata;
  const metadata = typeof meta === 'object' && meta !== null && !Array.isArray(meta) ? meta as Record<string, unknown> : {};
  return { weightMap, metadata };
}

/** Opens a checkpoint directory: `model.safetensors.index.json` with its shards, else `model.safetensors`. */
export function openCheckpoint(dir: string): Promise<Checkpoint> {
  return Checkpoint.open(dir);
}

/** Options of {@link writeCheckpoint}. */
export interface WriteCheckpointOptions {
  /**
   * Largest tensor-data size of one shard in bytes (default 5e9, Hugging Face's "5GB"). When all
   * tensors fit, one `model.safetensors` is written; otherwise shards
   * `model-0000i-of-0000n.safetensors` are filled in order and `model.safetensors.index.json`
   * lists them. A tensor larger than the limit gets a shard of its own.
   */
  maxShardBytes?: number;
  /** `__metadata__` written into every file (e.g. { format: 'pt' }). */
  metadata?: Record<string, string>;
}

/**
 * Writes a checkpoint directory (created if needed) readable by {@link openCheckpoint} and by
 * Hugging Face loaders. Each file is written atomically; a sharded write removes any old index
 * first and writes the new one last, so an index never names an incomplete or stale shard. The
 * other layout's entry file (a stale index or single file) is removed so the directory opens as
 * what was just written; old shard files with other names are left in place.
 */
export async function writeCheckpoint(
  dir: string,
  tensors: readonly SafetensorsWriteTensor[],
  options: WriteCheckpointOptions = {},
): Promise<void> {
  const where = `writeCheckpoint(${dir})`;
  const maxShardBytes = options.maxShardBytes ?? 5e9;
  if (!(Number.isSafeInteger(maxShardBytes) && maxShardBytes > 0)) {
    throw new R1VError('ARGUMENT', `${where}: maxShardBytes must be a positive integer, got ${String(maxShardBytes)}`);
  }
  checkWriteTensors(tensors, where);
  try {
    await fsp.mkdir(dir, { recursive: true });
  } catch (error) {
    throw new R1VError('IO', `${where}: cannot create the directory: ${(error as Error).message}`, { cause: error });
  }
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

  const removeIfPresent = async (file: string): Promise<void> => {
    try {
      await fsp.rm(path.join(dir, file), { force: true });
    } catch (error) {
      throw new R1VError('IO', `${where}: cannot remove stale ${file}: ${(error as Error).message}`, { cause: error });
    }
  };
  if (shards.length === 1) {
    await writeSafetensors(path.join(dir, SINGLE_FILE), shards[0]!, options.metadata);
    await removeIfPresent(INDEX_FILE);
    return;
  }
  // Shards overwrite same-named old ones, so the old index goes first: a failure midway must not
  // leave an index that mixes old and new shards.
  await removeIfPresent(INDEX_FILE);
  const n = shards.length;
  const pad = (i: number): string => String(i).padStart(5, '0');
  const weightMap: Record<string, string> = {};
  for (const [i, shard] of shards.entries()) {
    const name = `model-${pad(i + 1)}-of-${pad(n)}.safetensors`;
    await writeSafetensors(path.join(dir, name), shard, options.metadata);
    for (const t of shard) weightMap[t.name] = name;
  }
  const index = `${JSON.stringify({ metadata: { total_size: totalBytes }, weight_map: weightMap }, null, 2)}\n`;
  await writeAtomically(path.join(dir, INDEX_FILE), (fh) => writeAll(fh, Buffer.from(index, 'utf8')));
  await removeIfPresent(SINGLE_FILE);
}

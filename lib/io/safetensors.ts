// Hugging Face safetensors files and sharded checkpoints, read and written by streaming:
// the header is parsed on open and each tensor is read (or written) with positional I/O
// into a buffer of exactly its size, so a multi-GB file never sits in one JS buffer.
//
// Format: u64 little-endian header length N, N bytes of UTF-8 JSON
// ({ name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__"?: { string: string } }),
// then the data buffer; offsets are relative to its start and the tensors tile it exactly.
import { endianness } from 'node:os';
import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';

import { R1VError } from '../core/errors.js';

/** The safetensors dtypes this module reads and writes. */
export type SafetensorsDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

/**
 * A tensor's data as stored: little-endian row-major values in the host typed array of the
 * dtype. BF16 and F16 are raw 16-bit patterns (convert with {@link bf16ToF32}/{@link f16ToF32}
 * or {@link toFloat32}); BOOL is one byte per element.
 */
export type SafetensorsTensor =
  | { dtype: 'F64'; shape: number[]; data: Float64Array }
  | { dtype: 'F32'; shape: number[]; data: Float32Array }
  | { dtype: 'F16' | 'BF16'; shape: number[]; data: Uint16Array }
  | { dtype: 'I64'; shape: number[]; data: BigInt64Array }
  | { dtype: 'I32'; shape: number[]; data: Int32Array }
  | { dtype: 'I16'; shape: number[]; data: Int16Array }
  | { dtype: 'I8'; shape: number[]; data: Int8Array }
  | { dtype: 'U8' | 'BOOL'; shape: number[]; data: Uint8Array };

/** Any of the typed arrays a {@link SafetensorsTensor} holds. */
export type SafetensorsData = SafetensorsTensor['data'];

/** Where one tensor lives in a file, as declared by the header. */
export interface SafetensorsEntry {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  /** Byte offset of the first byte in the file (data start + data_offsets[0]). */
  readonly fileOffset: number;
  /** Size in bytes (data_offsets[1] − data_offsets[0] = element size × element count). */
  readonly byteLength: number;
  /** The file the tensor is stored in. */
  readonly file: string;
}

const ELEMENT = {
  F64: { bytes: 8, array: Float64Array },
  F32: { bytes: 4, array: Float32Array },
  F16: { bytes: 2, array: Uint16Array },
  BF16: { bytes: 2, array: Uint16Array },
  I64: { bytes: 8, array: BigInt64Array },
  I32: { bytes: 4, array: Int32Array },
  I16: { bytes: 2, array: Int16Array },
  I8: { bytes: 1, array: Int8Array },
  U8: { bytes: 1, array: Uint8Array },
  BOOL: { bytes: 1, array: Uint8Array },
} as const;

/** The reference implementation refuses headers over 100 MB; so do we, before allocating one. */
const MAX_HEADER_BYTES = 100_000_000;
/** One positional read or write moves at most this much (Node caps a single call near 2 GiB). */
const IO_CHUNK_BYTES = 1 << 30;

function isDType(value: unknown): value is SafetensorsDType {
  return typeof value === 'string' && Object.hasOwn(ELEMENT, value);
}

function ioError(file: string, message: string, cause?: unknown): R1VError {
  return new R1VError('IO', `safetensors ${file}: ${message}`, cause === undefined ? undefined : { cause });
}

function checkHostEndianness(file: string): void {
  // Typed arrays use host byte order; the format is little-endian.
  if (endianness() !== 'LE') throw ioError(file, 'big-endian hosts are not supported');
}

function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Reads exactly `target.byteLength` bytes at `position`, or fails naming the offset where the file ended. */
async function readExactly(fh: FileHandle, file: string, target: Uint8Array, position: number, what: string): Promise<void> {
  let done = 0;
  while (done < target.byteLength) {
    const want = Math.min(target.byteLength - done, IO_CHUNK_BYTES);
    let bytesRead: number;
    try {
      ({ bytesRead } = await fh.read(target, done, want, position + done));
    } catch (error) {
      throw ioError(file, `reading ${what} at byte ${position + done} failed: ${(error as Error).message}`, error);
    }
    if (bytesRead === 0) {
      throw ioError(file, `file ends at byte ${position + done} inside ${what} (bytes ${position}..${position + target.byteLength})`);
    }
    done += bytesRead;
  }
}

async function writeAll(fh: FileHandle, bytes: Uint8Array): Promise<void> {
  for (let done = 0; done < bytes.byteLength;) {
    const { bytesWritten } = await fh.write(bytes, done, Math.min(bytes.byteLength - done, IO_CHUNK_BYTES));
    done += bytesWritten;
  }
}

function parseHeader(file: string, fileSize: number, headerLength: number, json: Uint8Array):
  { entries: Map<string, SafetensorsEntry>; metadata: Record<string, string> } {
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(json));
  } catch (error) {
    throw ioError(file, `header (bytes 8..${8 + headerLength}) is not valid UTF-8 JSON: ${(error as Error).message}`, error);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw ioError(file, `header (bytes 8..${8 + headerLength}) is not a JSON object`);
  }
  const dataStart = 8 + headerLength;
  const dataSize = fileSize - dataStart;
  const metadata: Record<string, string> = {};
  const raw: Array<SafetensorsEntry & { begin: number; end: number }> = [];
  for (const [name, value] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)
        || !Object.values(value).every((v) => typeof v === 'string')) {
        throw ioError(file, `header entry "__metadata__" (header at byte 8) must map strings to strings`);
      }
      Object.assign(metadata, value);
      continue;
    }
    const where = `header entry "${name}" (header at byte 8)`;
    if (typeof value !== 'object' || value === null) throw ioError(file, `${where} is not an object`);
    const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
    if (!isDType(dtype)) throw ioError(file, `${where}: unknown dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw ioError(file, `${where}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2
      || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]) {
      throw ioError(file, `${where}: data_offsets ${JSON.stringify(offsets)} is not [begin, end] with 0 <= begin <= end`);
    }
    const [begin, end] = offsets as [number, number];
    const byteLength = elementCount(shape) * ELEMENT[dtype].bytes;
    if (end - begin !== byteLength) {
      throw ioError(file, `tensor "${name}" at byte ${dataStart + begin}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes `
        + `but ${dtype} ${JSON.stringify(shape)} needs ${byteLength}`);
    }
    raw.push({ name, dtype, shape: Object.freeze([...shape] as number[]), fileOffset: dataStart + begin, byteLength, file, begin, end });
  }
  raw.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expected = 0;
  for (const e of raw) {
    if (e.begin !== expected) {
      const problem = e.begin < expected ? 'overlaps the previous tensor' : 'leaves a gap after the previous tensor';
      throw ioError(file, `tensor "${e.name}" at byte ${e.fileOffset} (data_offsets [${e.begin}, ${e.end}]) ${problem}, which ends at data offset ${expected}`);
    }
    expected = e.end;
  }
  if (expected !== dataSize) {
    const last = raw[raw.length - 1];
    const problem = expected > dataSize ? 'file is truncated' : 'file has trailing bytes';
    const tensor = last ? `tensor "${last.name}" (bytes ${last.fileOffset}..${dataStart + expected}) ends` : 'the header ends';
    throw ioError(file, `${problem}: ${tensor} at byte ${dataStart + expected} but the file is ${fileSize} bytes`);
  }
  const entries = new Map<string, SafetensorsEntry>();
  for (const { begin: _b, end: _e, ...entry } of raw) entries.set(entry.name, Object.freeze(entry));
  return { entries, metadata };
}

/**
 * One open safetensors file: the validated header is in memory, tensor data is read on demand.
 * Close it with {@link SafetensorsFile.close} (or `await using`).
 */
export class SafetensorsFile implements AsyncDisposable {
  private closed = false;

  private constructor(
    /** The file's path, as given to open. */
    readonly path: string,
    private readonly fh: FileHandle,
    /** Tensors by name, in file order. */
    readonly entries: ReadonlyMap<string, SafetensorsEntry>,
    /** The header's `__metadata__` (empty when absent). */
    readonly metadata: Readonly<Record<string, string>>,
  ) {}

  /**
   * Opens `file` and validates its header: header length against the file size, UTF-8 JSON,
   * known dtypes, non-negative integer shapes, data_offsets matching dtype size × element count
   * and tiling the data buffer exactly up to the end of the file (so truncation is caught here).
   * Throws R1VError('IO') naming the file and the byte offset or entry at fault.
   */
  static async open(file: string): Promise<SafetensorsFile> {
    checkHostEndianness(file);
    let fh: FileHandle;
    try {
      fh = await fsp.open(file, 'r');
    } catch (error) {
      throw ioError(file, `cannot open: ${(error as Error).message}`, error);
    }
    try {
      const { size } = await fh.stat();
      if (size < 8) throw ioError(file, `file is ${size} bytes, too short for the 8-byte header length at byte 0`);
      const prefix = new Uint8Array(8);
      await readExactly(fh, file, prefix, 0, 'the header length');
      const declared = Buffer.from(prefix.buffer).readBigUInt64LE(0);
      if (declared > BigInt(size - 8)) {
        throw ioError(file, `header length ${declared} at byte 0 runs past the end of the ${size}-byte file`);
      }
      const headerLength = Number(declared);
      if (headerLength > MAX_HEADER_BYTES) {
        throw ioError(file, `header length ${headerLength} at byte 0 exceeds the ${MAX_HEADER_BYTES}-byte limit`);
      }
      const json = new Uint8Array(headerLength);
      await readExactly(fh, file, json, 8, 'the header');
      const { entries, metadata } = parseHeader(file, size, headerLength, json);
      return new SafetensorsFile(file, fh, entries, Object.freeze(metadata));
    } catch (error) {
      await fh.close();
      throw error;
    }
  }

  /** Tensor names in file order. */
  names(): string[] {
    return [...this.entries.keys()];
  }

  /** The header entry for `name`; R1VError('IO') naming the file when absent. */
  entry(name: string): SafetensorsEntry {
    const e = this.entries.get(name);
    if (!e) throw ioError(this.path, `no tensor named "${name}"`);
    return e;
  }

  /**
   * Reads one tensor into a fresh typed array of exactly its size, with a positional read at its
   * offset (nothing else of the file is loaded). Concurrent reads on one file are fine.
   */
  async readTensor(name: string): Promise<SafetensorsTensor> {
    if (this.closed) throw ioError(this.path, `readTensor("${name}") after close`);
    const e = this.entry(name);
    const bytes = new Uint8Array(e.byteLength);
    await readExactly(this.fh, this.path, bytes, e.fileOffset, `tensor "${name}"`);
    const data = new ELEMENT[e.dtype].array(bytes.buffer);
    return { dtype: e.dtype, shape: [...e.shape], data } as SafetensorsTensor;
  }

  /** Releases the file handle; idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Data for one tensor to write: a typed array, or a function producing it when its turn comes. */
export type SafetensorsSource = SafetensorsData | (() => SafetensorsData | Promise<SafetensorsData>);

/**
 * One tensor to write. `data` must be the dtype's array type (see {@link SafetensorsTensor}),
 * except that BF16 and F16 also accept a Float32Array, converted with round to nearest even.
 * A function is called only when the tensor is written, so a caller can stream a model out of
 * device memory one tensor at a time.
 */
export interface SafetensorsWriteTensor {
  name: string;
  dtype: SafetensorsDType;
  shape: readonly number[];
  data: SafetensorsSource;
}

function checkWriteTensors(tensors: readonly SafetensorsWriteTensor[], where: string): void {
  const seen = new Set<string>();
  for (const t of tensors) {
    if (typeof t.name !== 'string' || t.name === '' || t.name === '__metadata__') {
      throw new R1VError('ARGUMENT', `${where}: tensor name ${JSON.stringify(t.name)} is empty or reserved`);
    }
    if (seen.has(t.name)) throw new R1VError('ARGUMENT', `${where}: tensor name "${t.name}" appears twice`);
    seen.add(t.name);
    if (!isDType(t.dtype)) throw new R1VError('DTYPE', `${where}: tensor "${t.name}" has unknown dtype ${JSON.stringify(t.dtype)}`);
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new R1VError('SHAPE', `${where}: tensor "${t.name}" shape ${JSON.stringify(t.shape)} is not a list of non-negative integers`);
    }
  }
}

/** The little-endian bytes of `t`'s data, converted from f32 for BF16/F16 when given as a Float32Array. */
function tensorBytes(t: SafetensorsWriteTensor, data: SafetensorsData, where: string): Uint8Array {
  let stored: SafetensorsData = data;
  if ((t.dtype === 'BF16' || t.dtype === 'F16') && data instanceof Float32Array) {
    stored = t.dtype === 'BF16' ? f32ToBf16(data) : f32ToF16(data);
  }
  const expected = ELEMENT[t.dtype].array;
  if (!(stored instanceof expected)) {
    throw new R1VError('DTYPE', `${where}: tensor "${t.name}" (${t.dtype}) needs a ${expected.name}, got ${stored?.constructor?.name ?? typeof stored}`);
  }
  const n = elementCount(t.shape);
  if (stored.length !== n) {
    throw new R1VError('SHAPE', `${where}: tensor "${t.name}" has ${stored.length} elements but shape ${JSON.stringify(t.shape)} needs ${n}`);
  }
  return new Uint8Array(stored.buffer, stored.byteOffset, stored.byteLength);
}

function byteSize(t: SafetensorsWriteTensor): number {
  return elementCount(t.shape) * ELEMENT[t.dtype].bytes;
}

/** Creates `file` atomically: `fill` writes a `.tmp` sibling, which is fsynced and renamed; on failure the tmp is removed. */
async function writeAtomically(file: string, fill: (fh: FileHandle) => Promise<void>): Promise<void> {
  const tmp = `${file}.tmp`;
  let fh: FileHandle | undefined;
  try {
    fh = await fsp.open(tmp, 'w');
    await fill(fh);
    await fh.sync();
    await fh.close();
    fh = undefined;
    await fsp.rename(tmp, file);
  } catch (error) {
    await fh?.close().catch(() => undefined);
    await fsp.rm(tmp, { force: true });
    if (error instanceof R1VError) throw error;
    throw new R1VError('IO', `writing ${file} failed: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * Writes a safetensors file at `file`, streaming each tensor's bytes in order (the header is
 * padded with spaces so the data starts 8-byte aligned). The file appears only once complete:
 * it is written to `file + '.tmp'`, fsynced and renamed, and a failure leaves no file behind.
 * Bad tensors throw R1VError ARGUMENT/DTYPE/SHAPE; I/O failures R1VError('IO').
 */
export async function writeSafetensors(
  file: string,
  tensors: readonly SafetensorsWriteTensor[],
  metadata?: Record<string, string>,
): Promise<void> {
  const where = `writeSafetensors(${file})`;
  checkHostEndianness(file);
  checkWriteTensors(tensors, where);
  if (metadata !== undefined && (typeof metadata !== 'object' || metadata === null
    || !Object.values(metadata).every((v) => typeof v === 'string'))) {
    throw new R1VError('ARGUMENT', `${where}: metadata must map strings to strings`);
  }
  const header: Record<string, unknown> = {};
  if (metadata !== undefined && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    const size = byteSize(t);
    header[t.name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + size] };
    offset += size;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Math.ceil(json.length / 8) * 8;
  json = Buffer.concat([json, Buffer.alloc(padded - json.length, 0x20)]);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  await writeAtomically(file, async (fh) => {
    await writeAll(fh, prefix);
    await writeAll(fh, json);
    for (const t of tensors) {
      const data = typeof t.data === 'function' ? await t.data() : t.data;
      await writeAll(fh, tensorBytes(t, data, where));
    }
  });
}

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

// --- 16-bit float conversions (pure TS; round to nearest even, NaN stays NaN) ---

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** bf16 bit patterns → f32 values (exact). */
export function bf16ToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) outBits[i] = bits[i]! << 16;
  return out;
}

/** f32 values → bf16 bit patterns, round to nearest even; NaN → quiet NaN of the same sign. */
export function f32ToBf16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  const inBits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < values.length; i++) {
    const x = inBits[i]!;
    if ((x & 0x7fffffff) > 0x7f800000) out[i] = (x >>> 16) | 0x0040;
    else out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** f16 bit patterns → f32 values (exact, subnormals included). */
export function f16ToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i]!;
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) {
      out[i] = sign * mant * 2 ** -24;
    } else if (exp === 0x1f) {
      u32[0] = ((h & 0x8000) << 16) | 0x7f800000 | (mant << 13);
      out[i] = f32[0]!;
    } else {
      out[i] = sign * (1024 + mant) * 2 ** (exp - 25);
    }
  }
  return out;
}

/** f32 values → f16 bit patterns, round to nearest even (overflow → ±Inf, tiny → subnormal/±0). */
export function f32ToF16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  const inBits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < values.length; i++) {
    const x = inBits[i]!;
    const sign = (x >>> 16) & 0x8000;
    const abs = x & 0x7fffffff;
    if (abs > 0x7f800000) {
      out[i] = sign | 0x7e00 | ((abs >>> 13) & 0x3ff);
    } else if (abs >= 0x477ff000) {
      // 65520 and above (Inf included) round past the largest f16, 65504.
      out[i] = sign | 0x7c00;
    } else if (abs < 0x38800000) {
      // Below 2^-14: a subnormal count of 2^-24 steps, rounded half to even (may carry into the smallest normal).
      const scaled = Math.abs(values[i]!) * 2 ** 24;
      const floor = Math.floor(scaled);
      const frac = scaled - floor;
      out[i] = sign | (frac > 0.5 || (frac === 0.5 && (floor & 1) === 1) ? floor + 1 : floor);
    } else {
      const h = ((((abs >>> 23) - 112) << 10) | ((abs >>> 13) & 0x3ff)) >>> 0;
      const rest = abs & 0x1fff;
      out[i] = sign | (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1) ? h + 1 : h);
    }
  }
  return out;
}

/** A float tensor's values as f32 (F32 as is, F64 narrowed, BF16/F16 widened); R1VError('DTYPE') otherwise. */
export function toFloat32(t: SafetensorsTensor): Float32Array {
  switch (t.dtype) {
    case 'F32': return t.data;
    case 'F64': return Float32Array.from(t.data);
    case 'BF16': return bf16ToF32(t.data);
    case 'F16': return f16ToF32(t.data);
    default: throw new R1VError('DTYPE', `toFloat32: ${t.dtype} is not a float dtype`);
  }
}

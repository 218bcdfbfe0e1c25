// Hugging Face safetensors files and sharded checkpoints, read and written by streaming:
// the header is parsed on open and each tensor is read (or written) with positional I/O
// into a buffer of exactly its size, so a multi-GB file never sits in one JS buffer.
//
// Format: u64 little-endian header length N, N bytes of UTF-8 JSON
// ({ name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__"?: { string: string } }),
// then the data buffer; offsets are relative to its start and the tensors tile it exactly.
//
// Limits, each an R1VError('IO') naming the file before anything large is allocated: a header of
// at most 100 MB and MAX_JSON_KEYS keys (parsing time grows with the keys), a tensor of at most
// MAX_HOST_BYTES (the largest buffer this host can hold). Files are opened as regular files only
// (a FIFO fails at once; see files.ts).
import type { FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';

import { R1VError } from '../core/errors.js';
import { exceedsJsonKeyLimit, MAX_JSON_KEYS, openRegularFile, writeAll, writeFileAtomically } from './files.js';
import { f32ToBf16, f32ToF16, MAX_HOST_BYTES } from './half.js';
import { clip } from './problems.js';

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
/** One positional read moves at most this much (Node caps a single call near 2 GiB). */
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
    const where = `header entry "${clip(name, 200)}" (header at byte 8)`;
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
      throw ioError(file, `tensor "${clip(name, 200)}" at byte ${dataStart + begin}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes `
        + `but ${dtype} ${JSON.stringify(shape)} needs ${byteLength}`);
    }
    raw.push({ name, dtype, shape: Object.freeze([...shape] as number[]), fileOffset: dataStart + begin, byteLength, file, begin, end });
  }
  raw.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expected = 0;
  for (const e of raw) {
    if (e.begin !== expected) {
      const problem = e.begin < expected ? 'overlaps the previous tensor' : 'leaves a gap after the previous tensor';
      throw ioError(file, `tensor "${clip(e.name, 200)}" at byte ${e.fileOffset} (data_offsets [${e.begin}, ${e.end}]) ${problem}, which ends at data offset ${expected}`);
    }
    expected = e.end;
  }
  if (expected !== dataSize) {
    const last = raw[raw.length - 1];
    const problem = expected > dataSize ? 'file is truncated' : 'file has trailing bytes';
    const tensor = last ? `tensor "${clip(last.name, 200)}" (bytes ${last.fileOffset}..${dataStart + expected}) ends` : 'the header ends';
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
   * Opens `file` and validates its header: header length against the file size, UTF-8 JSON of at
   * most MAX_JSON_KEYS keys, known dtypes, non-negative integer shapes, data_offsets matching
   * dtype size × element count and tiling the data buffer exactly up to the end of the file (so
   * truncation is caught here). Only a regular file is opened (a FIFO or device fails at once);
   * with `inside`, only one whose real path lies in that directory (a symlink leaving it fails).
   * Throws R1VError('IO') naming the file and the byte offset or entry at fault.
   */
  static async open(file: string, options: { inside?: string } = {}): Promise<SafetensorsFile> {
    checkHostEndianness(file);
    const fh = await openRegularFile(file, 'safetensors', options);
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
      if (exceedsJsonKeyLimit(json)) {
        throw ioError(file, `header (bytes 8..${8 + headerLength}) has more than ${MAX_JSON_KEYS} JSON keys (':'), `
          + `the limit that keeps parsing fast (at most ${MAX_JSON_KEYS / 4} tensors a file)`);
      }
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
    if (!e) throw ioError(this.path, `no tensor named "${clip(name, 200)}"`);
    return e;
  }

  /**
   * Reads one tensor into a fresh typed array of exactly its size, with a positional read at its
   * offset (nothing else of the file is loaded). Concurrent reads on one file are fine. A tensor
   * larger than MAX_HOST_BYTES is R1VError('IO') naming it and its size, before any allocation.
   */
  async readTensor(name: string): Promise<SafetensorsTensor> {
    if (this.closed) throw ioError(this.path, `readTensor("${clip(name, 200)}") after close`);
    const e = this.entry(name);
    if (e.byteLength > MAX_HOST_BYTES) {
      throw ioError(this.path, `tensor "${clip(name, 200)}" is ${e.byteLength} bytes, more than the largest buffer this host can hold (${MAX_HOST_BYTES} bytes)`);
    }
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

/** @internal */
export function checkWriteTensors(tensors: readonly SafetensorsWriteTensor[], where: string): void {
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
    if (!Number.isSafeInteger(byteSize(t))) {
      throw new R1VError('SHAPE', `${where}: tensor "${t.name}" shape ${JSON.stringify(t.shape)} has more bytes than a file can address`);
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

/** @internal */
export function byteSize(t: SafetensorsWriteTensor): number {
  return elementCount(t.shape) * ELEMENT[t.dtype].bytes;
}

/**
 * @internal Checks tensors and metadata and returns the writer of the file's bytes: the header
 * (padded with spaces so the data starts 8-byte aligned), then each tensor's bytes in order,
 * produced when its turn comes. A header readers would refuse (over MAX_JSON_KEYS keys) is
 * R1VError('ARGUMENT'); bad tensors ARGUMENT/DTYPE/SHAPE.
 */
export function serializeSafetensors(tensors: readonly SafetensorsWriteTensor[], metadata: Record<string, string> | undefined,
  where: string): (fh: FileHandle) => Promise<void> {
  checkHostEndianness(where);
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
  if (exceedsJsonKeyLimit(json)) {
    throw new R1VError('ARGUMENT', `${where}: the header of ${tensors.length} tensors would have more than ${MAX_JSON_KEYS} JSON keys, `
      + 'which readers refuse; split the tensors over several files (a sharded checkpoint)');
  }
  const padded = Math.ceil(json.length / 8) * 8;
  json = Buffer.concat([json, Buffer.alloc(padded - json.length, 0x20)]);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  return async (fh) => {
    await writeAll(fh, prefix);
    await writeAll(fh, json);
    for (const t of tensors) {
      const data = typeof t.data === 'function' ? await t.data() : t.data;
      await writeAll(fh, tensorBytes(t, data, where));
    }
  };
}

/**
 * Writes a safetensors file at `file`, streaming each tensor's bytes in order. The file appears
 * only once complete: it is written to a new unique hidden temporary beside it (created
 * exclusively, so a planted symlink is never followed), fsynced, renamed over `file` (replacing
 * whatever entry was there, a symlink included, without writing through it) and the directory is
 * fsynced; a failure leaves no file behind. Bad tensors throw R1VError ARGUMENT/DTYPE/SHAPE; I/O
 * failures R1VError('IO').
 */
export async function writeSafetensors(
  file: string,
  tensors: readonly SafetensorsWriteTensor[],
  metadata?: Record<string, string>,
): Promise<void> {
  const where = `writeSafetensors(${file})`;
  await writeFileAtomically(file, serializeSafetensors(tensors, metadata, where), where);
}

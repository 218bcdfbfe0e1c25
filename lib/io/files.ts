// The files of a checkpoint directory, opened and created so that nothing planted there can
// redirect, stall or half-write them.
//
// Reading: only regular files. Every open is O_NONBLOCK and followed by fstat, so a FIFO, device,
// socket or directory is refused at once (an open never waits for a FIFO's writer, so no thread
// of libuv's pool is held). With `inside`, the file's real path must lie in that directory: a
// symlink that leaves it is refused, one that stays inside is followed; the resolved path is then
// opened with O_NOFOLLOW. JSON is parsed only below a bound on its keys (parsing cost grows with
// them; a header of millions of entries must fail fast).
//
// Writing: a new file is created exclusively (O_CREAT|O_EXCL|O_NOFOLLOW: a symlink at the name
// is EEXIST, never followed), filled and fsynced. A file is replaced through a unique hidden
// temporary beside it (`.<name>.<16 hex>.tmp`): created that way, then renamed over the name
// (rename replaces a symlink there, it does not write through it), then the directory is
// fsynced. Every failure is R1VError('IO') whose message starts with `where`.
import { randomBytes } from 'node:crypto';
import { constants, promises as fsp, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';

import { R1VError } from '../core/errors.js';

const O_NOFOLLOW = constants.O_NOFOLLOW ?? 0;
const O_NONBLOCK = constants.O_NONBLOCK ?? 0;
const CREATE_NEW = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | O_NOFOLLOW;
/** One positional write moves at most this much (Node caps a single call near 2 GiB). */
const IO_CHUNK_BYTES = 1 << 30;
/** At most this many ':' (each JSON key has one) in JSON this module parses: 2^18. */
export const MAX_JSON_KEYS = 262_144;

export function ioFailure(where: string, message: string, cause?: unknown): R1VError {
  return new R1VError('IO', `${where}: ${message}`, cause === undefined ? undefined : { cause });
}

/** The errno code (ENOENT, EEXIST, ...) of an error, or of the cause of an R1VError. */
export function errnoOf(error: unknown): string | undefined {
  const inner = error instanceof R1VError ? error.cause : error;
  return (inner as NodeJS.ErrnoException | undefined)?.code;
}

function kindOf(st: Stats): string {
  if (st.isFIFO()) return 'a FIFO';
  if (st.isDirectory()) return 'a directory';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  if (st.isSocket()) return 'a socket';
  return 'a special file';
}

/** The real path of `file`, which must lie inside `dir` (itself resolved). */
async function realPathInside(file: string, dir: string, where: string): Promise<string> {
  let root: string, real: string;
  try {
    [root, real] = await Promise.all([fsp.realpath(dir), fsp.realpath(file)]);
  } catch (error) {
    throw ioFailure(where, `cannot open ${file}: ${(error as Error).message}`, error);
  }
  const rel = path.relative(root, real);
  if (rel === '' || rel === '..' || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel)) {
    throw ioFailure(where, `${file} resolves to ${real}, outside the directory ${root}; only files inside it are read`);
  }
  return real;
}

/**
 * Opens `file` for reading if it is a regular file (with `inside`: one whose real path lies in
 * that directory). Never blocks on a FIFO. The caller closes the handle.
 */
export async function openRegularFile(file: string, where: string, options: { inside?: string } = {}): Promise<FileHandle> {
  const target = options.inside === undefined ? file : await realPathInside(file, options.inside, where);
  const flags = constants.O_RDONLY | O_NONBLOCK | (options.inside === undefined ? 0 : O_NOFOLLOW);
  let fh: FileHandle;
  try {
    fh = await fsp.open(target, flags);
  } catch (error) {
    throw ioFailure(where, `cannot open ${file}: ${(error as Error).message}`, error);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw ioFailure(where, `${file} is ${kindOf(st)}, not a regular file`);
    return fh;
  } catch (error) {
    await fh.close();
    throw error instanceof R1VError ? error : ioFailure(where, `cannot stat ${file}: ${(error as Error).message}`, error);
  }
}

/** The bytes of a regular file (see openRegularFile) of at most maxBytes. */
export async function readRegularFile(file: string, where: string, options: { inside?: string; maxBytes: number }): Promise<Buffer> {
  const fh = await openRegularFile(file, where, options);
  try {
    const { size } = await fh.stat();
    if (size > options.maxBytes) throw ioFailure(where, `${file} is ${size} bytes, over the ${options.maxBytes}-byte limit for it`);
    return await fh.readFile();
  } catch (error) {
    throw error instanceof R1VError ? error : ioFailure(where, `reading ${file} failed: ${(error as Error).message}`, error);
  } finally {
    await fh.close();
  }
}

/** Runs `op` on `file`: true when done, false when nothing was there (ENOENT), else R1VError('IO'). */
async function unlessMissing(file: string, where: string, verb: string, op: () => Promise<unknown>): Promise<boolean> {
  try {
    await op();
    return true;
  } catch (error) {
    if (errnoOf(error) === 'ENOENT') return false;
    throw ioFailure(where, `cannot ${verb} ${file}: ${(error as Error).message}`, error);
  }
}

/** Whether something (a file, a link, anything) is at `file`. */
export function entryExists(file: string, where: string): Promise<boolean> {
  return unlessMissing(file, where, 'stat', () => fsp.lstat(file));
}

/** Whether UTF-8 JSON `bytes` may hold more than MAX_JSON_KEYS keys (counts ':' up to the limit only). */
export function exceedsJsonKeyLimit(bytes: Uint8Array): boolean {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = -1;
  for (let n = 0; n <= MAX_JSON_KEYS; n++) {
    at = buf.indexOf(0x3a, at + 1);
    if (at < 0) return false;
  }
  return true;
}

/** Parses the UTF-8 JSON of `file`, refusing (R1VError IO) more than MAX_JSON_KEYS keys. */
export function parseJsonFile(bytes: Uint8Array, file: string, where: string): unknown {
  if (exceedsJsonKeyLimit(bytes)) throw ioFailure(where, `${file} has more than ${MAX_JSON_KEYS} JSON keys (':'), the limit that keeps parsing fast`);
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (error) {
    throw ioFailure(where, `${file} is not valid UTF-8 JSON: ${(error as Error).message}`, error);
  }
}

/** A random lowercase hex string of 2·bytes characters. */
export function randomToken(bytes = 8): string {
  return randomBytes(bytes).toString('hex');
}

const TEMPORARY_NAME = /^\..+\.[0-9a-f]{16}\.tmp$/;

/** A fresh unique hidden temporary name beside `file`. */
export function temporaryBeside(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${randomToken()}.tmp`);
}

/** Whether a directory entry is one of this module's temporaries (see temporaryBeside). */
export function isTemporaryName(name: string): boolean {
  return TEMPORARY_NAME.test(name);
}

export async function writeAll(fh: FileHandle, bytes: Uint8Array): Promise<void> {
  for (let done = 0; done < bytes.byteLength;) {
    const { bytesWritten } = await fh.write(bytes, done, Math.min(bytes.byteLength - done, IO_CHUNK_BYTES));
    done += bytesWritten;
  }
}

/** Removes the entry at `file` (a link itself, not its target); false when there was none. */
export function removeFile(file: string, where: string): Promise<boolean> {
  return unlessMissing(file, where, 'remove', () => fsp.unlink(file));
}

/** Creates `file`, which must not exist (nor be a link), runs `fill` on it and fsyncs it; a failure removes it again. */
export async function writeNewFile(file: string, fill: (fh: FileHandle) => Promise<void>, where: string): Promise<void> {
  let fh: FileHandle;
  try {
    fh = await fsp.open(file, CREATE_NEW, 0o644);
  } catch (error) {
    throw ioFailure(where, `cannot create ${file}: ${(error as Error).message}`, error);
  }
  try {
    await fill(fh);
    await fh.sync();
    await fh.close();
  } catch (error) {
    await fh.close().catch(() => undefined);
    await fsp.unlink(file).catch(() => undefined);
    throw error instanceof R1VError ? error : ioFailure(where, `writing ${file} failed: ${(error as Error).message}`, error);
  }
}

/** fsyncs a directory, so the renames and removals in it are durable (not available on Windows). */
export async function syncDirectory(dir: string, where: string): Promise<void> {
  if (process.platform === 'win32') return;
  try {
    const fh = await fsp.open(dir, constants.O_RDONLY);
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (error) {
    throw ioFailure(where, `cannot fsync the directory ${dir}: ${(error as Error).message}`, error);
  }
}

/** Renames a complete temporary over `file` and fsyncs the directory; a failed rename removes the temporary. */
export async function commitRename(tmp: string, file: string, where: string): Promise<void> {
  try {
    await fsp.rename(tmp, file);
  } catch (error) {
    await fsp.unlink(tmp).catch(() => undefined);
    throw ioFailure(where, `cannot rename ${tmp} to ${file}: ${(error as Error).message}`, error);
  }
  await syncDirectory(path.dirname(file), where);
}

/** Replaces (or creates) `file` atomically: a new temporary beside it, filled, fsynced, renamed, directory fsynced. */
export async function writeFileAtomically(file: string, fill: (fh: FileHandle) => Promise<void>, where: string): Promise<void> {
  const tmp = temporaryBeside(file);
  await writeNewFile(tmp, fill, where);
  await commitRename(tmp, file, where);
}

/** Creates `dir` (and its parents) if needed; a path that is, or lies below, a file is R1VError('IO') naming it. */
export async function ensureDirectory(dir: string, where: string): Promise<void> {
  try {
    await fsp.mkdir(dir, { recursive: true });
  } catch (error) {
    const code = errnoOf(error);
    const problem = code === 'EEXIST' || code === 'ENOTDIR' ? `${dir} is not a directory (a file is in the way)` : `cannot create the directory ${dir}`;
    throw ioFailure(where, `${problem}: ${(error as Error).message}`, error);
  }
}

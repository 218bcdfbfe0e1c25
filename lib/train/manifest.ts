// The manifest of one checkpoint directory, and the file-system steps that make it durable.
//
// manifest.json: { format: 'r1v-checkpoint', version: 1, step, createdAt,
//   files: { "<relative/path>": { size, sha256 } }, metrics: { name: number } }
// Paths use '/' and stay inside the directory: no empty, '.' or '..' segment, no leading '/',
// no '\' or NUL. The manifest lists every regular file of the directory (subdirectories
// included) except manifest.json itself, and nothing else may be there: a symlink, FIFO, socket
// or device anywhere in the tree makes the directory invalid. Empty subdirectories are allowed.
// Metric values that JSON cannot hold are stored as the strings 'NaN', 'Infinity', '-Infinity'.
//
// Files are hashed by streaming through one buffer per file (model files may be GBs) and opened
// with O_NOFOLLOW. Every failure is R1VError('IO') whose message starts with `where` and names
// the file.
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsc, promises as fsp, type Stats } from 'node:fs';
import path from 'node:path';

import { R1VError } from '../core/errors.js';
import { isNumber, isObject } from '../core/validate.js';

/** The manifest's file name at the top of a checkpoint directory. */
export const MANIFEST_FILE = 'manifest.json';
/** Prefix of every temporary name the store creates; such names are never checkpoints. */
export const TEMP_PREFIX = '.tmp-';

const FORMAT = 'r1v-checkpoint';
const VERSION = 1;
const HASH_CHUNK_BYTES = 4 << 20;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const NON_FINITE = ['NaN', 'Infinity', '-Infinity'];

/** One listed file: its size in bytes and the hex sha256 of its content. */
export interface FileRecord {
  size: number;
  sha256: string;
}

/** A parsed manifest.json. */
export interface Manifest {
  step: number;
  createdAt: string;
  /** Relative path → record, sorted by path. */
  files: Map<string, FileRecord>;
  metrics: Record<string, number>;
}

/** R1VError('IO') `where: message`, followed by the cause's own message when there is one. */
export function ioError(where: string, message: string, cause?: unknown): R1VError {
  if (cause === undefined) return new R1VError('IO', `${where}: ${message}`);
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new R1VError('IO', `${where}: ${message}: ${detail}`, { cause });
}

/** A short random hex string for temporary names. */
export function randomSuffix(): string {
  return randomBytes(6).toString('hex');
}

/** Why `rel` is not an acceptable manifest path, or undefined when it is. */
function pathProblem(rel: string): string | undefined {
  if (rel === '') return 'is empty';
  if (rel.includes('\0') || rel.includes('\\')) return 'contains NUL or \\';
  if (rel.startsWith('/') || path.isAbsolute(rel)) return 'is absolute';
  if (rel.split('/').some((s) => s === '' || s === '.' || s === '..')) return 'has an empty, "." or ".." segment';
  if (rel === MANIFEST_FILE) return 'is the manifest itself';
  return undefined;
}

function describeKind(st: Stats): string {
  if (st.isSymbolicLink()) return 'a symbolic link';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isBlockDevice() || st.isCharacterDevice()) return 'a device';
  return 'not a regular file';
}

/**
 * The tree under root, without following links: every regular file (relative path → size,
 * the top-level manifest.json left out) and every directory ('' is root), deepest first.
 * Anything else, or a name no manifest may hold, is refused.
 */
export async function scanTree(root: string, where: string): Promise<{ files: Map<string, number>; dirs: string[] }> {
  const files = new Map<string, number>();
  const dirs: string[] = [];
  const visit = async (rel: string): Promise<void> => {
    let names: string[];
    try {
      names = (await fsp.readdir(path.join(root, rel))).sort();
    } catch (error) {
      throw ioError(where, `cannot list ${rel === '' ? root : rel}`, error);
    }
    for (const name of names) {
      const child = rel === '' ? name : `${rel}/${name}`;
      if (child === MANIFEST_FILE) continue;
      const problem = pathProblem(child);
      if (problem) throw ioError(where, `${JSON.stringify(child)} ${problem}`);
      let st: Stats;
      try {
        st = await fsp.lstat(path.join(root, child));
      } catch (error) {
        throw ioError(where, `cannot stat ${child}`, error);
      }
      if (st.isDirectory()) await visit(child);
      else if (st.isFile()) files.set(child, st.size);
      else throw ioError(where, `${child} is ${describeKind(st)}, not a regular file`);
    }
    dirs.push(rel);
  };
  await visit('');
  return { files, dirs };
}

/** Size and sha256 of a regular file, read in chunks (fsynced first when `sync`). */
export async function hashFile(file: string, where: string, sync: boolean): Promise<FileRecord> {
  const hash = createHash('sha256');
  let size = 0;
  try {
    const fh = await fsp.open(file, fsc.O_RDONLY | (fsc.O_NOFOLLOW ?? 0));
    try {
      if (sync) await fh.sync();
      const buffer = Buffer.allocUnsafe(HASH_CHUNK_BYTES);
      for (;;) {
        const { bytesRead } = await fh.read(buffer, 0, buffer.byteLength, size);
        if (bytesRead === 0) break;
        hash.update(buffer.subarray(0, bytesRead));
        size += bytesRead;
      }
      const { size: statSize } = await fh.stat();
      if (statSize !== size) throw new Error(`its size changed from ${size} to ${statSize} while it was read`);
    } finally {
      await fh.close();
    }
  } catch (error) {
    throw ioError(where, `cannot hash ${file}`, error);
  }
  return { size, sha256: hash.digest('hex') };
}

/** fsync of a directory, so that the names created or renamed in it survive a power loss (POSIX). */
export async function syncDirectory(dir: string): Promise<void> {
  if (process.platform === 'win32') return;  // directories cannot be opened for fsync there
  const fh = await fsp.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Writes `text` to `file` so that a reader sees the old content or all of the new: a temporary
 * sibling `.tmp-<name>-<random>` is created exclusively, written, fsynced and renamed over
 * `file`. The caller fsyncs the directory to make the rename durable.
 */
export async function replaceFile(file: string, text: string): Promise<void> {
  const tmp = path.join(path.dirname(file), `${TEMP_PREFIX}${path.basename(file)}-${randomSuffix()}`);
  const fh = await fsp.open(tmp, 'wx');
  try {
    await fh.writeFile(text, 'utf8');
    await fh.sync();
  } catch (error) {
    await fh.close();
    await fsp.rm(tmp, { force: true });
    throw error;
  }
  await fh.close();
  await fsp.rename(tmp, file);
}

function encodeMetric(value: number): number | string {
  return Number.isFinite(value) ? value : String(value);
}

function decodeMetric(value: unknown): number | undefined {
  if (isNumber(value)) return value;
  return typeof value === 'string' && NON_FINITE.includes(value) ? Number(value) : undefined;
}

/**
 * Seals a directory a writer has filled: fsyncs and hashes every file, writes manifest.json
 * (temporary name, fsync, rename), then fsyncs every directory, deepest first. Returns the
 * manifest.
 */
export async function writeManifest(
  dir: string, step: number, createdAt: string, metrics: Record<string, number>, where: string,
): Promise<Manifest> {
  const manifestFile = path.join(dir, MANIFEST_FILE);
  if (await fsp.lstat(manifestFile).then(() => true, () => false)) {
    throw ioError(where, `${manifestFile} was written by the checkpoint's writer; that name is the store's`);
  }
  const tree = await scanTree(dir, where);
  const files = new Map<string, FileRecord>();
  for (const rel of tree.files.keys()) files.set(rel, await hashFile(path.join(dir, rel), where, true));
  const json = {
    format: FORMAT, version: VERSION, step, createdAt,
    files: Object.fromEntries(files),
    metrics: Object.fromEntries(Object.entries(metrics).map(([k, v]) => [k, encodeMetric(v)])),
  };
  try {
    await replaceFile(manifestFile, `${JSON.stringify(json, null, 2)}\n`);
    for (const rel of tree.dirs) await syncDirectory(path.join(dir, rel));
  } catch (error) {
    throw ioError(where, `cannot write ${manifestFile}`, error);
  }
  return { step, createdAt, files, metrics: { ...metrics } };
}

/**
 * Reads and checks dir/manifest.json (a regular file, valid JSON, the r1v-checkpoint format,
 * version 1, every path acceptable, every record well formed). Does not look at the files.
 */
export async function readManifest(dir: string, where: string): Promise<Manifest> {
  const file = path.join(dir, MANIFEST_FILE);
  const bad = (message: string, cause?: unknown): R1VError => ioError(where, `${file} ${message}`, cause);
  let text: string;
  try {
    const st = await fsp.lstat(file);
    if (!st.isFile()) throw bad(`is ${describeKind(st)}, not a regular file`);
    text = await fsp.readFile(file, 'utf8');
  } catch (error) {
    if (error instanceof R1VError) throw error;
    throw bad((error as NodeJS.ErrnoException).code === 'ENOENT' ? 'is missing' : 'cannot be read', error);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw bad('is not valid JSON', error);
  }
  if (!isObject(json) || json.format !== FORMAT) throw bad(`is not an ${FORMAT} manifest`);
  if (json.version !== VERSION) throw bad(`has version ${JSON.stringify(json.version)}, this reader knows ${VERSION}`);
  const { step, createdAt, files, metrics } = json;
  if (!isNumber(step, { integer: true, min: 0 })) throw bad(`"step" must be a non-negative integer, got ${JSON.stringify(step)}`);
  if (typeof createdAt !== 'string') throw bad('"createdAt" must be a string');
  if (!isObject(files)) throw bad('"files" must be an object');
  if (!isObject(metrics)) throw bad('"metrics" must be an object');
  const records = new Map<string, FileRecord>();
  for (const rel of Object.keys(files).sort()) {
    const problem = pathProblem(rel);
    if (problem) throw bad(`lists ${JSON.stringify(rel)}, which ${problem}: paths must stay inside the checkpoint`);
    const r = files[rel];
    if (!isObject(r) || !isNumber(r.size, { integer: true, min: 0 }) || typeof r.sha256 !== 'string' || !SHA256_HEX.test(r.sha256)) {
      throw bad(`has a malformed record for ${rel} (need { size: integer ≥ 0, sha256: 64 hex digits })`);
    }
    records.set(rel, { size: r.size, sha256: r.sha256 });
  }
  const decoded = Object.entries(metrics).map(([name, value]) => {
    const v = decodeMetric(value);
    if (v === undefined) throw bad(`has a non-numeric metric ${JSON.stringify(name)}`);
    return [name, v] as const;
  });
  return { step, createdAt, files: records, metrics: Object.fromEntries(decoded) };
}

/**
 * Checks a checkpoint directory against its manifest: every listed file is a regular file inside
 * the directory (no link anywhere on its path) with the recorded size and sha256, and no file
 * is there that the manifest does not list. All problems are reported in one R1VError('IO').
 */
export async function verifyCheckpoint(dir: string, where: string): Promise<Manifest> {
  const manifest = await readManifest(dir, where);
  const { files } = await scanTree(dir, where);
  const problems: string[] = [];
  for (const [rel, record] of manifest.files) {
    const size = files.get(rel);
    if (size === undefined) problems.push(`${rel}: missing`);
    else if (size !== record.size) problems.push(`${rel}: ${size} bytes, manifest says ${record.size}`);
  }
  for (const rel of files.keys()) if (!manifest.files.has(rel)) problems.push(`${rel}: not listed in ${MANIFEST_FILE}`);
  if (problems.length === 0) {
    for (const [rel, record] of manifest.files) {
      const { sha256 } = await hashFile(path.join(dir, rel), where, false);
      if (sha256 !== record.sha256) problems.push(`${rel}: sha256 ${sha256}, manifest says ${record.sha256}`);
    }
  }
  if (problems.length > 0) throw ioError(where, `checkpoint ${dir} does not match its ${MANIFEST_FILE}:\n  ${problems.join('\n  ')}`);
  return manifest;
}

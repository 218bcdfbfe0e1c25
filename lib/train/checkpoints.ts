// CheckpointStore: the checkpoints of one training run, kept in <runDir>/checkpoints/.
//
//   checkpoints/step-000120/      one complete checkpoint: what the trainer wrote + manifest.json
//   checkpoints/latest.json       { "step": 120, "dir": "step-000120" }, replaced atomically
//   checkpoints/.tmp-*            temporary names of unfinished work (removed by the next open)
//
// A checkpoint directory is named by its step, zero-padded to 6 digits (wider when needed);
// only canonical names are checkpoints, anything else in checkpoints/ is left alone. A save
// fills a fresh temporary directory, seals it with a manifest (manifest.ts) and renames it into
// place; latest.json is written only after that rename is durable, so it never names an
// incomplete checkpoint. docs/checkpoints.md gives the protocol and why each step is there.
//
// One process writes a run directory at a time. Within the process, save() and latest() run one
// after another in call order; list() and best() answer from the manifests read so far.
import { promises as fsp } from 'node:fs';
import path from 'node:path';

import { R1VError } from '../core/errors.js';
import * as is from '../core/validate.js';
import {
  ioError, MANIFEST_FILE, randomSuffix, readManifest, replaceFile, syncDirectory, TEMP_PREFIX, verifyCheckpoint, writeManifest,
  type Manifest,
} from './manifest.js';

export interface CheckpointStoreOptions {
  /** Retention: keep the newest N checkpoints by step, integer ≥ 0 (0 keeps all). Default 3. */
  keepLast?: number;
  /** Retention: also keep the best M by `selectBy`, integer ≥ 0. Default 1; unused without selectBy. */
  keepBest?: number;
  /** A metric name in the checkpoints' metrics that ranks them (e.g. 'val_accuracy'). Default none. */
  selectBy?: string;
  /** Whether a larger `selectBy` value is better ('max') or a smaller one ('min'). Default 'max'. */
  mode?: 'max' | 'min';
  /** Receives warnings (a checkpoint skipped as incomplete or damaged). Default console.warn. */
  warn?: (message: string) => void;
}

/** A complete checkpoint. */
export interface CheckpointInfo {
  step: number;
  /** Absolute path of the checkpoint directory. */
  dir: string;
  metrics: Readonly<Record<string, number>>;
  /** ISO 8601 time of the save. */
  createdAt: string;
}

/** What the trainer passes to save: fills the (temporary) checkpoint directory it is given. */
export type CheckpointWriter = (dir: string) => Promise<void>;

const CHECKPOINTS_DIR = 'checkpoints';
const LATEST_FILE = 'latest.json';
const STEP_NAME = /^step-(\d{6,})$/;
const REPLACED_NAME = /^\.tmp-old-(step-\d{6,})-[0-9a-f]+$/;

/** The directory name of a step's checkpoint: step-000120, step-1234567. */
export function checkpointDirName(step: number): string {
  return `step-${String(step).padStart(6, '0')}`;
}

/** The step a canonical checkpoint directory name stands for, else undefined. */
function stepOfName(name: string): number | undefined {
  const m = STEP_NAME.exec(name);
  if (!m) return undefined;
  const step = Number(m[1]);
  return Number.isSafeInteger(step) && checkpointDirName(step) === name ? step : undefined;
}

function infoOf(dir: string, manifest: Manifest): CheckpointInfo {
  return Object.freeze({
    step: manifest.step, dir, metrics: Object.freeze({ ...manifest.metrics }), createdAt: manifest.createdAt,
  });
}

export class CheckpointStore {
  /** The run's checkpoints directory (absolute). */
  readonly dir: string;
  readonly #keepLast: number;
  readonly #keepBest: number;
  readonly #selectBy: string | undefined;
  readonly #mode: 'max' | 'min';
  readonly #warn: (message: string) => void;
  /** Complete checkpoints by step, as their manifests say. */
  readonly #index = new Map<number, CheckpointInfo>();
  /** The tail of the save/latest queue. */
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(dir: string, o: Required<Omit<CheckpointStoreOptions, 'selectBy'>> & { selectBy: string | undefined }) {
    this.dir = dir;
    this.#keepLast = o.keepLast;
    this.#keepBest = o.keepBest;
    this.#selectBy = o.selectBy;
    this.#mode = o.mode;
    this.#warn = o.warn;
  }

  /**
   * Opens the checkpoints of a run directory, creating runDir/checkpoints when needed. Leftovers
   * of interrupted work are cleaned: temporary directories of unfinished saves and deletions
   * are removed, and a checkpoint that a save interrupted while replacing it is put back. Every
   * canonical step directory with a well-formed manifest is listed (files are hashed only by
   * latest() and verify()).
   */
  static async open(runDir: string, options: CheckpointStoreOptions = {}): Promise<CheckpointStore> {
    const fn = 'CheckpointStore.open';
    if (is.string(runDir, 'runDir', fn) === '') is.fail(fn, 'runDir must be a directory path, got ""');
    const o = is.options(options, ['keepLast', 'keepBest', 'selectBy', 'mode', 'warn'] as const, fn);
    const selectBy = o.selectBy === undefined ? undefined : is.string(o.selectBy, 'selectBy', fn);
    if (selectBy === '') is.fail(fn, 'selectBy must be a metric name, got ""');
    const store = new CheckpointStore(path.resolve(runDir, CHECKPOINTS_DIR), {
      keepLast: is.optionalNumber(o.keepLast, 'keepLast', fn, 3, { integer: true, min: 0 }),
      keepBest: is.optionalNumber(o.keepBest, 'keepBest', fn, 1, { integer: true, min: 0 }),
      selectBy,
      mode: is.optionalOneOf(o.mode, 'mode', fn, ['max', 'min'] as const, 'max'),
      warn: o.warn === undefined ? (m: string) => console.warn(m) : is.func<(m: string) => void>(o.warn, 'warn', fn),
    });
    await store.#recover(fn);
    return store;
  }

  async #recover(where: string): Promise<void> {
    let names: string[];
    try {
      await fsp.mkdir(this.dir, { recursive: true });
      await syncDirectory(path.dirname(this.dir));
      names = await fsp.readdir(this.dir);
      for (const name of names.filter((n) => n.startsWith(TEMP_PREFIX))) {
        const replaced = REPLACED_NAME.exec(name)?.[1];
        const target = replaced === undefined ? undefined : path.join(this.dir, replaced);
        if (target !== undefined && !(await exists(target))) await fsp.rename(path.join(this.dir, name), target);
        else await fsp.rm(path.join(this.dir, name), { recursive: true, force: true });
      }
      await syncDirectory(this.dir);
      names = await fsp.readdir(this.dir);
    } catch (error) {
      throw ioError(where, `cannot prepare ${this.dir}`, error);
    }
    for (const name of names.sort()) {
      const step = stepOfName(name);
      if (step === undefined) continue;
      try {
        const problem = `${where}: ${name} is not a complete checkpoint (left in place, not listed)`;
        this.#index.set(step, await this.#readChecked(path.join(this.dir, name), step, problem, readManifest));
      } catch (error) {
        if (!(error instanceof R1VError)) throw error;
        this.#warn(error.message);
      }
    }
  }

  /** Reads dir's manifest with `read` and checks that it records `step`. */
  async #readChecked(dir: string, step: number | undefined, where: string, read: typeof readManifest): Promise<CheckpointInfo> {
    const manifest = await read(dir, where);
    if (step !== undefined && manifest.step !== step) {
      throw ioError(where, `${path.join(dir, MANIFEST_FILE)} records step ${manifest.step}, the directory is ${path.basename(dir)}`);
    }
    return infoOf(dir, manifest);
  }

  /** Runs `task` after every queued save/latest has settled. */
  #serial<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(task, task);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Saves the checkpoint of `step` (integer ≥ 0): `write(dir)` fills a fresh temporary directory
   * with whatever files the trainer keeps (regular files and subdirectories only), then the store
   * writes manifest.json (size and sha256 of every file), renames the directory to
   * step-NNNNNN (replacing an earlier checkpoint of the same step), points latest.json at it and
   * applies retention. `metrics` (numbers) are recorded in the manifest and rank checkpoints by
   * `selectBy`. A failure of `write` removes the temporary directory and rethrows: an R1VError
   * as it is, anything else as R1VError('IO') naming the step.
   */
  async save(step: number, write: CheckpointWriter, metrics: Record<string, number> = {}): Promise<CheckpointInfo> {
    const fn = 'CheckpointStore.save';
    is.number(step, 'step', fn, { integer: true, min: 0 });
    is.func(write, 'write', fn);
    if (!is.isObject(metrics)) is.fail(fn, `metrics must be an object of numbers, got ${is.show(metrics)}`);
    for (const [k, v] of Object.entries(metrics)) if (typeof v !== 'number') is.fail(fn, `metrics.${k} must be a number, got ${is.show(v)}`);
    return this.#serial(() => this.#save(step, write, { ...metrics }, `${fn}(step ${step})`));
  }

  async #save(step: number, write: CheckpointWriter, metrics: Record<string, number>, where: string): Promise<CheckpointInfo> {
    const name = checkpointDirName(step);
    const tmp = path.join(this.dir, `${TEMP_PREFIX}${name}-${randomSuffix()}`);
    try {
      await fsp.mkdir(tmp);
    } catch (error) {
      throw ioError(where, `cannot create ${tmp}`, error);
    }
    let manifest: Manifest;
    try {
      try {
        await write(tmp);
      } catch (error) {
        if (error instanceof R1VError) throw error;
        throw ioError(where, `write(${tmp}) failed`, error);
      }
      manifest = await writeManifest(tmp, step, new Date().toISOString(), metrics, where);
    } catch (error) {
      await fsp.rm(tmp, { recursive: true, force: true }).catch(() => undefined);
      throw error;
    }
    const dir = path.join(this.dir, name);
    await this.#install(tmp, dir, where);
    const info = infoOf(dir, manifest);
    this.#index.set(step, info);
    try {
      await replaceFile(path.join(this.dir, LATEST_FILE), `${JSON.stringify({ step, dir: name })}\n`);
      await syncDirectory(this.dir);
    } catch (error) {
      throw ioError(where, `${name} is saved, but ${LATEST_FILE} could not be updated`, error);
    }
    await this.#applyRetention(step, where);
    return info;
  }

  /**
   * Renames the sealed temporary directory to `dir`. An existing `dir` (the same step saved
   * before) is first renamed aside to .tmp-old-<name>-<random> and removed once the new one is
   * durable; should the process die in between, open() renames it back.
   */
  async #install(tmp: string, dir: string, where: string): Promise<void> {
    const aside = path.join(this.dir, `${TEMP_PREFIX}old-${path.basename(dir)}-${randomSuffix()}`);
    let replaced = false;
    try {
      try {
        await fsp.rename(dir, aside);
        replaced = true;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
      await fsp.rename(tmp, dir);
      await syncDirectory(this.dir);
    } catch (error) {
      if (replaced && !(await exists(dir))) await fsp.rename(aside, dir).catch(() => undefined);
      await fsp.rm(tmp, { recursive: true, force: true }).catch(() => undefined);
      throw ioError(where, `cannot install ${path.basename(dir)}`, error);
    }
    if (replaced) await this.#discard(aside);
  }

  /**
   * Keeps the newest keepLast checkpoints by step (all when 0), the best keepBest by selectBy,
   * and the one latest.json names (`pinned`); the others are renamed to a temporary name and
   * removed, so an interrupted deletion never leaves a partial checkpoint under a step name.
   * A checkpoint that cannot be removed stays (with a warning): the save itself has succeeded.
   */
  async #applyRetention(pinned: number, where: string): Promise<void> {
    if (this.#keepLast === 0) return;
    const keep = new Set<number>([pinned]);
    [...this.#index.keys()].sort((a, b) => b - a).slice(0, this.#keepLast).forEach((s) => keep.add(s));
    this.#ranked().slice(0, this.#keepBest).forEach((c) => keep.add(c.step));
    for (const step of [...this.#index.keys()].filter((s) => !keep.has(s))) {
      const name = checkpointDirName(step);
      const trash = path.join(this.dir, `${TEMP_PREFIX}del-${name}-${randomSuffix()}`);
      try {
        await fsp.rename(path.join(this.dir, name), trash);
      } catch (error) {
        this.#warn(`${where}: retention could not remove ${name}, it stays: ${(error as Error).message}`);
        continue;
      }
      this.#index.delete(step);
      await this.#discard(trash);
    }
  }

  /** Removes a tree already renamed to a temporary name; a failure only warns (the next open() retries). */
  async #discard(tmp: string): Promise<void> {
    try {
      await fsp.rm(tmp, { recursive: true, force: true });
    } catch (error) {
      this.#warn(`CheckpointStore: cannot remove ${tmp}, the next open() will: ${(error as Error).message}`);
    }
  }

  /** Checkpoints with a finite selectBy metric, best first (ties: the later step first). */
  #ranked(): CheckpointInfo[] {
    const key = this.#selectBy;
    if (key === undefined) return [];
    const sign = this.#mode === 'max' ? 1 : -1;
    return [...this.#index.values()]
      .filter((c) => Number.isFinite(c.metrics[key]))
      .sort((a, b) => sign * (b.metrics[key]! - a.metrics[key]!) || b.step - a.step);
  }

  /**
   * The checkpoint to resume from: the one latest.json names if it verifies (every file hashed
   * against its manifest), else the highest step that does; undefined when none does. A
   * checkpoint that fails is reported through `warn`, dropped from list() and left on disk.
   */
  latest(): Promise<CheckpointInfo | undefined> {
    return this.#serial(async () => {
      const where = 'CheckpointStore.latest';
      const named = await readLatestFile(this.dir);
      const others = [...this.#index.keys()].filter((s) => s !== named).sort((a, b) => b - a);
      for (const step of named === undefined ? others : [named, ...others]) {
        const name = checkpointDirName(step);
        try {
          const info = await this.#readChecked(path.join(this.dir, name), step, `${where}: skipping ${name}`, verifyCheckpoint);
          this.#index.set(step, info);
          return info;
        } catch (error) {
          if (!(error instanceof R1VError)) throw error;
          this.#index.delete(step);
          this.#warn(error.message);
        }
      }
      return undefined;
    });
  }

  /**
   * Checks one checkpoint directory against its manifest.json: every listed file present as a
   * regular file inside it with the recorded size and sha256, no unlisted file, no link, FIFO or
   * other special file anywhere, no listed path escaping the directory, and for a directory named
   * step-NNNNNN the manifest's step matching the name. R1VError('IO') naming the checkpoint and
   * each bad file; resolves to the checkpoint's info.
   */
  async verify(dir: string): Promise<CheckpointInfo> {
    const fn = 'CheckpointStore.verify';
    is.string(dir, 'dir', fn);
    const abs = path.resolve(dir);
    return this.#readChecked(abs, stepOfName(path.basename(abs)), `${fn}(${abs})`, verifyCheckpoint);
  }

  /** The complete checkpoints, by increasing step. */
  list(): CheckpointInfo[] {
    return [...this.#index.values()].sort((a, b) => a.step - b.step);
  }

  /** The best checkpoint by selectBy and mode (ties: the later step); undefined without selectBy or candidates. */
  best(): CheckpointInfo | undefined {
    return this.#ranked()[0];
  }
}

/** The step checkpointsDir/latest.json names, or undefined when it is missing or malformed. */
async function readLatestFile(checkpointsDir: string): Promise<number | undefined> {
  let json: unknown;
  try {
    json = JSON.parse(await fsp.readFile(path.join(checkpointsDir, LATEST_FILE), 'utf8'));
  } catch {
    return undefined;
  }
  if (!is.isObject(json) || !is.isNumber(json.step, { integer: true, min: 0 }) || json.dir !== checkpointDirName(json.step)) return undefined;
  return json.step;
}

/**
 * Read-only: the directory of a run's newest checkpoint, the one runDir/checkpoints/latest.json
 * names, else the highest step directory holding a manifest.json; undefined when there is none.
 * Nothing is hashed or changed (CheckpointStore.open would clean up temporary names, which a
 * trainer running in that directory may be writing); verify the result before trusting it.
 */
export async function latestCheckpointDir(runDir: string): Promise<string | undefined> {
  const dir = path.resolve(runDir, CHECKPOINTS_DIR);
  const named = await readLatestFile(dir);
  if (named !== undefined && await exists(path.join(dir, checkpointDirName(named), MANIFEST_FILE))) return path.join(dir, checkpointDirName(named));
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch {
    return undefined;
  }
  const steps = names.map(stepOfName).filter((s): s is number => s !== undefined).sort((a, b) => b - a);
  for (const step of steps) {
    if (await exists(path.join(dir, checkpointDirName(step), MANIFEST_FILE))) return path.join(dir, checkpointDirName(step));
  }
  return undefined;
}

async function exists(p: string): Promise<boolean> {
  try {
    await fsp.lstat(p);
    return true;
  } catch {
    return false;
  }
}


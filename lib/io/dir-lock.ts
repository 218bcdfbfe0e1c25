// One save at a time per directory. A save holds the lock file `.r1v-save.lock` in the
// directory for its whole duration; it holds { pid, host, token } of the writer. The lock is
// written complete into a temporary first and hard-linked into place (link fails when the name
// exists), so nobody ever reads a half-written lock. A second writer finds it and is refused
// with R1VError('IO') naming the directory and the holder — also within one process (two saves
// at once). A lock whose process is dead (on this host), or that is not a well-formed lock file
// at all (a planted link, a corrupt file), is stale and is taken over: moved aside, checked to be
// the very entry judged stale (not a lock taken in between, which is put back), removed. A lock
// from another host cannot be checked and counts as held. Readers never take the lock: every
// commit is atomic, so they see the old or the new checkpoint.
import { constants, promises as fsp } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';

import {
  errnoOf, ioFailure, randomToken, removeFile, temporaryBeside, writeAll, writeNewFile,
} from './files.js';

export const LOCK_FILE = '.r1v-save.lock';

interface Holder {
  /** inode of the entry judged, to recognise it when moving it aside. */
  ino: number;
  live: boolean;
  description: string;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errnoOf(error) === 'EPERM';
  }
}

/** Who holds the lock at `lock`, or undefined when nothing is there any more. */
async function readHolder(lock: string, where: string): Promise<Holder | undefined> {
  let st;
  try {
    st = await fsp.lstat(lock);
  } catch (error) {
    if (errnoOf(error) === 'ENOENT') return undefined;
    throw ioFailure(where, `cannot stat the lock ${lock}: ${(error as Error).message}`, error);
  }
  if (st.isDirectory()) throw ioFailure(where, `the lock ${lock} is a directory; remove it to save here`);
  let text = '';
  if (st.isFile()) {
    try {
      const fh = await fsp.open(lock, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0));
      try {
        if ((await fh.stat()).ino === st.ino) text = await fh.readFile('utf8');
      } finally {
        await fh.close();
      }
    } catch (error) {
      if (errnoOf(error) === 'ENOENT') return undefined;
    }
  }
  let holder: { pid?: unknown; host?: unknown } = {};
  try {
    holder = JSON.parse(text) as typeof holder;
  } catch {
    // not a lock this module wrote: stale
  }
  const { pid, host } = holder ?? {};
  if (!Number.isSafeInteger(pid) || (pid as number) <= 0 || typeof host !== 'string') {
    return { ino: st.ino, live: false, description: 'a malformed lock' };
  }
  const live = host !== hostname() || processAlive(pid as number);
  return { ino: st.ino, live, description: `process ${pid as number} on ${host}` };
}

function busy(dir: string, lock: string, holder: string, where: string): never {
  throw ioFailure(where, `${dir} is being saved by another writer (${holder}, lock ${lock}); `
    + 'wait for that save, or remove the lock file if no save is running there');
}

/** Moves a stale lock aside and removes it, unless the entry there is no longer the one judged stale. */
async function breakStaleLock(dir: string, lock: string, stale: Holder, where: string): Promise<void> {
  const aside = temporaryBeside(lock);
  try {
    await fsp.rename(lock, aside);
  } catch (error) {
    if (errnoOf(error) === 'ENOENT') return;
    throw ioFailure(where, `cannot move the stale lock ${lock} aside: ${(error as Error).message}`, error);
  }
  const moved = await fsp.lstat(aside).then((st) => st.ino, () => -1);
  if (moved !== stale.ino) {
    await fsp.link(aside, lock).catch(() => undefined);
    await removeFile(aside, where);
    busy(dir, lock, 'a writer that took over a stale lock', where);
  }
  await removeFile(aside, where);
}

async function acquire(dir: string, lock: string, where: string): Promise<void> {
  const tmp = temporaryBeside(lock);
  const content = JSON.stringify({ pid: process.pid, host: hostname(), token: randomToken() });
  await writeNewFile(tmp, (fh) => writeAll(fh, Buffer.from(content)), where);
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await fsp.link(tmp, lock);
        return;
      } catch (error) {
        if (errnoOf(error) !== 'EEXIST') throw ioFailure(where, `cannot create the lock ${lock}: ${(error as Error).message}`, error);
      }
      const holder = await readHolder(lock, where);
      if (holder?.live) busy(dir, lock, holder.description, where);
      if (holder) await breakStaleLock(dir, lock, holder, where);
    }
    busy(dir, lock, 'writers that keep taking it', where);
  } finally {
    await fsp.unlink(tmp).catch(() => undefined);
  }
}

/** Runs `body` holding dir's save lock (dir must exist); refuses with R1VError('IO') when another writer holds it. */
export async function withDirectoryLock<T>(dir: string, where: string, body: () => Promise<T>): Promise<T> {
  const lock = path.join(dir, LOCK_FILE);
  await acquire(dir, lock, where);
  try {
    return await body();
  } finally {
    await fsp.unlink(lock).catch(() => undefined);
  }
}

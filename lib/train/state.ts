// The trainer's position, saved as trainer_state.json in every checkpoint so a resumed run
// continues exactly: the global step, the stage and the step within it (which is also the LR
// schedule's position), the data cursor, and the history of checkpoint metrics. There is no
// random-generator state to save: every draw is keyed by (seed, step) — the data order by
// (seed, epoch), sampling by (seed, global step) — so a resumed run draws what the
// uninterrupted run would have.
import { promises as fsp } from 'node:fs';
import path from 'node:path';

import { R1VError } from '../core/errors.js';
import type { DatasetRow } from '../data/dataset.js';

export const STATE_FILE = 'trainer_state.json';

/** Where the data cursor stands: epoch e of the order, index i in it. */
export interface CursorState {
  epoch: number;
  index: number;
}

export interface TrainerState {
  format: 'r1v-trainer-state';
  version: 1;
  /** Steps done in the whole run. */
  step: number;
  /** The stage in progress (or the next to begin), and steps done in it. */
  stage: number;
  stageName: string;
  stageStep: number;
  /** Data cursor of the stage in progress. */
  cursor: CursorState;
  /** Metrics of every checkpoint written so far (validation accuracy, critical-token entropy, ...). */
  history: Array<{ step: number; stage: string; metrics: Record<string, number> }>;
  /** sha256 of the resolved config, to refuse resuming with another one. */
  configHash: string;
}

/** A seeded PRNG (mulberry32 over a splitmix-mixed seed): data order only, never model math. */
export function prng(...seeds: number[]): () => number {
  let h = 0x9e3779b9;
  for (const s of seeds) {
    h = Math.imul(h ^ (s >>> 0), 0x85ebca6b) ^ Math.imul((s / 2 ** 32) >>> 0, 0xc2b2ae35);
    h ^= h >>> 13;
  }
  let state = h >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The rows in a reproducible order, consumed k at a time across epochs: each epoch is a fresh
 * permutation keyed by (seed, epoch), or, with the difficulty curriculum, the rows from easiest
 * to hardest (stable) every epoch.
 */
export class RowSampler {
  #cursor: CursorState = { epoch: 0, index: 0 };
  #order: number[] = [];
  #orderEpoch = -1;

  constructor(readonly rows: readonly DatasetRow[], readonly seed: number, readonly curriculum: 'none' | 'difficulty') {
    if (rows.length === 0) throw new R1VError('CONFIG', 'the training data has no usable rows');
  }

  get cursor(): CursorState {
    return { ...this.#cursor };
  }

  restore(cursor: CursorState): void {
    this.#cursor = { ...cursor };
  }

  #orderOf(epoch: number): number[] {
    if (this.#orderEpoch === epoch) return this.#order;
    const order = this.rows.map((_, i) => i);
    if (this.curriculum === 'difficulty') {
      order.sort((a, b) => (this.rows[a]!.difficulty ?? 0) - (this.rows[b]!.difficulty ?? 0) || a - b);
    } else {
      const next = prng(this.seed, epoch);
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(next() * (i + 1));
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
    }
    this.#order = order;
    this.#orderEpoch = epoch;
    return order;
  }

  /** The next k rows (wrapping into the next epoch). */
  next(k: number): DatasetRow[] {
    const out: DatasetRow[] = [];
    while (out.length < k) {
      const order = this.#orderOf(this.#cursor.epoch);
      out.push(this.rows[order[this.#cursor.index]!]!);
      this.#cursor.index += 1;
      if (this.#cursor.index >= order.length) this.#cursor = { epoch: this.#cursor.epoch + 1, index: 0 };
    }
    return out;
  }
}

export async function writeState(dir: string, state: TrainerState): Promise<void> {
  await fsp.writeFile(path.join(dir, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
}

export async function readState(dir: string): Promise<TrainerState> {
  const file = path.join(dir, STATE_FILE);
  let state: TrainerState;
  try {
    state = JSON.parse(await fsp.readFile(file, 'utf8')) as TrainerState;
  } catch (error) {
    throw new R1VError('IO', `cannot read ${file}: ${(error as Error).message}`, { cause: error });
  }
  const ok = state && state.format === 'r1v-trainer-state' && state.version === 1
    && [state.step, state.stage, state.stageStep, state.cursor?.epoch, state.cursor?.index].every((x) => Number.isSafeInteger(x) && x >= 0)
    && Array.isArray(state.history) && typeof state.configHash === 'string';
  if (!ok) throw new R1VError('IO', `${file} is not an r1v trainer state (version 1)`);
  return state;
}

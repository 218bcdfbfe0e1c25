// What a saved benchmark record says about where and when it was measured (the git commit of
// the working directory, when it is a checkout).
import { execSync } from 'node:child_process';
import { cpus } from 'node:os';

import { devices } from '../core/device.js';
import { native } from '../core/native.js';

export interface RunIdentity {
  /** ISO date and time of the run. */
  date: string;
  /** Short git commit of the checkout, or 'unknown'. */
  commit: string;
  /** Names of the CUDA devices present. */
  gpus: string[];
  /** File-name tag of the machine: the first GPU's name, else cpu-<cores>core. */
  machine: string;
}

export function runIdentity(): RunIdentity {
  const date = new Date().toISOString();
  let commit = 'unknown';
  try {
    commit = execSync('git rev-parse --short HEAD', { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {}
  const gpus = devices().filter((d) => d.kind === 'cuda').map((d) => d.name);
  const machine = gpus.length ? gpus[0]!.replace(/[^A-Za-z0-9]+/g, '-') : `cpu-${cpus().length}core`;
  return { date, commit, gpus, machine };
}

/** The CPU's fp32 FMA peak over all threads, GFLOP/s: the best of four 0.3 s runs after a warm-up. */
export function measuredCpuPeakGflops(): number {
  native().measureCpuPeakGflops(0.3);
  return Math.max(...Array.from({ length: 4 }, () => native().measureCpuPeakGflops(0.3)));
}

// Shared test utilities: a seeded generator (fresh seed per run, printed so a failure
// can be replayed with R1V_TEST_SEED), float64 references and error assertions.
import assert from 'node:assert/strict';

import { devices, type Engine, ops, R1VError, type R1VErrorCode } from '../lib/index.js';

const runSeed = process.env.R1V_TEST_SEED ? Number(process.env.R1V_TEST_SEED) : Math.floor(Math.random() * 2 ** 31);
let announced = false;

/** A fresh generator for one test; its seed derives from the run's seed and a label. */
export function rng(label: string): () => number {
  if (!announced) {
    console.log(`    (random inputs: R1V_TEST_SEED=${runSeed})`);
    announced = true;
  }
  let h = runSeed ^ 0x9e3779b9;
  for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x85ebca6b);
  let state = h >>> 0;
  return () => {
    // mulberry32
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Uniform values in [-1, 1), none of them zero-filled by accident. */
export function randomArray(n: number, next: () => number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = next() * 2 - 1;
  return out;
}

/** op(A)·op(B) in float64 for row-major inputs of the given stored shapes. */
export function matmulReference(
  a: ArrayLike<number>, aRows: number, aCols: number, transA: boolean,
  b: ArrayLike<number>, bRows: number, bCols: number, transB: boolean,
): { out: Float64Array; m: number; n: number } {
  const m = transA ? aCols : aRows;
  const k = transA ? aRows : aCols;
  const n = transB ? bRows : bCols;
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let p = 0; p < k; p++) {
        const av = transA ? a[p * aCols + i]! : a[i * aCols + p]!;
        const bv = transB ? b[j * bCols + p]! : b[p * bCols + j]!;
        sum += av * bv;
      }
      out[i * n + j] = sum;
    }
  }
  return { out, m, n };
}

/** One random 2-D f32 product op(A)[m,k]·op(B)[k,n] on the engine; returns its relative error. */
export async function matmulCaseError(
  e: Engine, m: number, n: number, k: number, transA: boolean, transB: boolean, next: () => number,
): Promise<number> {
  const [aRows, aCols] = transA ? [k, m] : [m, k];
  const [bRows, bCols] = transB ? [n, k] : [k, n];
  const a = randomArray(m * k, next);
  const b = randomArray(k * n, next);
  using ta = e.tensor(a, [aRows, aCols]);
  using tb = e.tensor(b, [bRows, bCols]);
  using c = ops.matmul(ta, tb, { transA, transB });
  assert.deepEqual(c.shape, [m, n]);
  const ref = matmulReference(a, aRows, aCols, transA, b, bRows, bCols, transB);
  return relativeError(await c.toArray(), ref.out);
}

/** ‖x − ref‖ / ‖ref‖; NaN anywhere in x makes it Infinity, so NaN never passes. */
export function relativeError(x: ArrayLike<number>, ref: ArrayLike<number>): number {
  assert.equal(x.length, ref.length, 'lengths differ');
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < ref.length; i++) {
    const xi = x[i]!;
    if (!Number.isFinite(xi)) return Infinity;
    diff += (xi - ref[i]!) ** 2;
    norm += ref[i]! ** 2;
  }
  if (norm === 0) return Math.sqrt(diff);
  return Math.sqrt(diff / norm);
}

/** Asserts fn throws an R1VError with the code (and, if given, a message matching pattern). */
export function expectR1VError(fn: () => unknown, code: R1VErrorCode, pattern?: RegExp): R1VError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof R1VError, `expected R1VError, got ${String(error)}`);
    assert.equal(error.code, code, `wrong code for: ${error.message}`);
    if (pattern) assert.match(error.message, pattern);
    return error;
  }
  assert.fail(`expected R1VError(${code}), nothing was thrown`);
}

/** p rejects with an R1VError of this code (and a message matching pattern, when given). */
export async function expectR1VRejection(p: Promise<unknown>, code: R1VErrorCode, pattern?: RegExp): Promise<void> {
  await assert.rejects(p, (error: unknown) => {
    assert.ok(error instanceof R1VError, `expected R1VError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    if (pattern) assert.match(error.message, pattern);
    return true;
  });
}

/** Whether CUDA tests can run; with R1V_REQUIRE_GPU=1 a missing GPU is a failure. */
export function cudaAvailable(): boolean {
  const has = devices().some((d) => d.kind === 'cuda');
  if (!has && process.env.R1V_REQUIRE_GPU === '1') {
    throw new Error('R1V_REQUIRE_GPU=1 but no CUDA device is available (devices() lists the CPU only)');
  }
  return has;
}

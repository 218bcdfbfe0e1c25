// Shared test utilities: a seeded generator (fresh seed per run, printed so a failure can be
// replayed with R1V_TEST_SEED), random inputs, the per-device suite of the op tests and error
// assertions. The float64 references the tests compare with are in reference/.
import assert from 'node:assert/strict';

import { type DeviceId, devices, Engine, type FloatDType, ops, R1VError, type R1VErrorCode } from '../lib/index.js';
import { matmulReference } from './reference/layers.js';
import { mulberry32 } from './reference/math.js';

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
  return mulberry32(h >>> 0);
}

/** Uniform values in [-1, 1), none of them zero-filled by accident. */
export function randomArray(n: number, next: () => number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = next() * 2 - 1;
  return out;
}

/** x with every element times s. */
export function scaled(x: Float32Array, s: number): Float32Array {
  return x.map((v) => v * s);
}

/** n uniform integers in [0, below). */
export function randomInts(n: number, below: number, next: () => number): Int32Array {
  return Int32Array.from({ length: n }, () => Math.floor(next() * below));
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

/**
 * ‖x − ref‖ / max(‖ref‖, ‖scale‖) (non-finite x fails): the error of a result whose terms can
 * cancel, measured against the size of those terms (`scale`, e.g. Σ|term| per element of a sum)
 * rather than against the result, which may be near zero however accurate the arithmetic.
 */
export function scaledError(x: ArrayLike<number>, ref: ArrayLike<number>, scale: ArrayLike<number>): number {
  const norm = (a: ArrayLike<number>) => Math.sqrt(Array.from(a).reduce((s, v) => s + v * v, 0));
  const err = relativeError(x, ref);
  if (!Number.isFinite(err)) return err;
  const diff = Math.sqrt(Array.from(x).reduce((s, v, i) => s + (v - ref[i]!) ** 2, 0));
  return diff / Math.max(norm(ref), norm(scale), Number.MIN_VALUE);
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

/** What a per-device suite of forEachDevice runs on. */
export interface DeviceSuite {
  device: DeviceId;
  /** f32 on the CPU (it computes in f32 only); f32, bf16 and f16 on CUDA. */
  dtypes: FloatDType[];
  /** mocha's it, handing the test the suite's engine. */
  it: (title: string, test: (this: Mocha.Context, e: Engine) => void | Promise<void>) => void;
}

/**
 * describe(`${title} (CPU)`, …) and, when a GPU is present, describe(`${title} (cuda:0) @cuda`, …)
 * (without one the CUDA suite is not registered; R1V_REQUIRE_GPU=1 makes that a failure). Each
 * suite has an engine of its own with the given seed and poisonNewTensors (what an op leaves
 * unwritten reads back as NaN), created before its tests and disposed after them.
 */
export function forEachDevice(title: string, options: { seed: number }, body: (suite: DeviceSuite) => void): void {
  const devs: DeviceId[] = ['cpu', ...(cudaAvailable() ? (['cuda:0'] as const) : [])];
  for (const device of devs) {
    describe(`${title} ${device === 'cpu' ? '(CPU)' : `(${device}) @cuda`}`, () => {
      let engine: Engine | undefined;
      before(() => {
        engine = Engine.create({ device, seed: options.seed, poisonNewTensors: true });
      });
      after(() => engine?.dispose());
      body({
        device,
        dtypes: device === 'cpu' ? ['f32'] : ['f32', 'bf16', 'f16'],
        it: (name, test) => it(name, function () {
          return test.call(this, engine!);
        }),
      });
    });
  }
}

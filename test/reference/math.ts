// The tests' float64 library: scalar functions (erfc, Φ, φ, GELU, SiLU), softmax statistics,
// the 16-bit float decoders, the tests' generator (mulberry32) and the reference of the
// engine's randn (Philox + Box-Muller), written from the definitions and independent of lib/
// (an engine bug cannot hide in its own reference). The array references (matmul, norms,
// attention, …) are in layers.ts.
//
// Conventions: float64 throughout; inputs ArrayLike<number>, outputs Float64Array; matrices
// flat and row-major with their sizes passed explicitly; temperatures divide logits (z / T).

// ---------------------------------------------------------------- vectors

/** Σ a[i]·b[i], summed in order. */
export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

// ---------------------------------------------------------------- random numbers

/** mulberry32: uniform numbers in [0, 1) from a 32-bit seed (the tests' generator, not the engine's Philox). */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const MASK = 0xffffffffn;

/**
 * Philox4x32-10 (Salmon et al., 2011) in BigInt arithmetic, the reference of the engine's randn
 * (checked against the published known-answer vectors in randn.test.ts).
 */
export function philox(counter: bigint[], key: bigint[]): bigint[] {
  let [c0, c1, c2, c3] = counter as [bigint, bigint, bigint, bigint];
  let [k0, k1] = key as [bigint, bigint];
  for (let round = 0; round < 10; round++) {
    const p0 = 0xd2511f53n * c0;
    const p1 = 0xcd9e8d57n * c2;
    const hi0 = p0 >> 32n, lo0 = p0 & MASK, hi1 = p1 >> 32n, lo1 = p1 & MASK;
    [c0, c1, c2, c3] = [hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0];
    k0 = (k0 + 0x9e3779b9n) & MASK;
    k1 = (k1 + 0xbb67ae85n) & MASK;
  }
  return [c0, c1, c2, c3];
}

/** Elements 0..count−1 of the engine's randn(seed, offset): Box-Muller on the words of Philox counter block i/4. */
export function randnReference(count: number, seed: number, offset: number): Float64Array {
  const out = new Float64Array(count);
  const s = BigInt(seed), o = BigInt(offset);
  for (let i = 0; i < count; i++) {
    const block = BigInt(Math.floor(i / 4));
    const words = philox([block & MASK, block >> 32n, o & MASK, o >> 32n], [s & MASK, s >> 32n]);
    const lane = i % 4;
    const pair = lane >> 1;
    const u1 = (Number(words[2 * pair]! >> 8n) + 1) / 2 ** 24;
    const u2 = (Number(words[2 * pair + 1]! >> 8n) + 1) / 2 ** 24;
    const r = Math.sqrt(-2 * Math.log(u1));
    out[i] = lane % 2 === 0 ? r * Math.cos(2 * Math.PI * u2) : r * Math.sin(2 * Math.PI * u2);
  }
  return out;
}

// ---------------------------------------------------------------- erfc, Φ, φ and activations

/**
 * erf(x) for 0 ≤ x < 2 by the series (2/√π)·e^{−x²}·Σ 2ⁿ·x^{2n+1} / (2n+1)!!, whose terms are
 * all positive (no cancellation, unlike the alternating Maclaurin series).
 */
function erfSeries(x: number): number {
  let term = x;
  let sum = x;
  for (let n = 1; term > sum * 1e-17; n++) {
    term *= (2 * x * x) / (2 * n + 1);
    sum += term;
  }
  return (2 / Math.sqrt(Math.PI)) * Math.exp(-x * x) * sum;
}

/**
 * erfc(x) = 1 − erf(x), accurate relative to its value in both tails (≤ 3e-13 against 40-digit
 * values wherever Φ(z) = erfc(−z/√2)/2 is a normal double): 1 − erf below 2, where erfc > 4e-3;
 * Laplace's continued fraction e^{−x²} / (√π·(x + (1/2)/(x + 1/(x + (3/2)/(x + …))))) from 2 on,
 * so the upper tail never comes from a difference; erfc(−x) = 2 − erfc(x).
 */
export function erfc(x: number): number {
  if (x < 0) return 2 - erfc(-x);
  if (x < 2) return 1 - erfSeries(x);
  let k = x;
  for (let n = 100; n >= 1; n--) k = x + n / 2 / k;
  return Math.exp(-x * x) / (Math.sqrt(Math.PI) * k);
}

/** Φ(z), the standard normal CDF, as erfc(−z/√2)/2: relative accuracy far into the lower tail. */
export function normalCdf(z: number): number {
  return 0.5 * erfc(-z / Math.SQRT2);
}

/** φ(z), the standard normal density. */
export function normalPdf(z: number): number {
  return Math.exp(-0.5 * z * z) / Math.sqrt(2 * Math.PI);
}

/** GELU (the erf form): z·Φ(z). */
export function gelu(z: number): number {
  return z * normalCdf(z);
}

/** d GELU / dz = Φ(z) + z·φ(z). */
export function geluDerivative(z: number): number {
  return normalCdf(z) + z * normalPdf(z);
}

export function sigmoid(z: number): number {
  return 1 / (1 + Math.exp(-z));
}

/** SiLU: z·σ(z). */
export function silu(z: number): number {
  return z * sigmoid(z);
}

// ---------------------------------------------------------------- softmax statistics

/** log Σ exp(u[i]), the sum shifted by the maximum; −∞ for an empty or all −∞ row. */
export function logSumExp(u: ArrayLike<number>): number {
  let max = -Infinity;
  for (let i = 0; i < u.length; i++) max = Math.max(max, u[i]!);
  if (max === -Infinity) return -Infinity;
  let sum = 0;
  for (let i = 0; i < u.length; i++) sum += Math.exp(u[i]! - max);
  return max + Math.log(sum);
}

export interface SoftmaxStats {
  /** log p[r, targets[r]] */
  logp: Float64Array;
  /** −Σ_j p log p of row r (−∞ logits, p = 0, add nothing) */
  entropy: Float64Array;
  /** log p[r, j], [n, v] */
  logProbs: Float64Array;
}

/** Statistics of p = softmax(z / T) for each row of z [n, v]. */
export function softmaxStats(z: ArrayLike<number>, n: number, v: number, targets: ArrayLike<number>, t: number): SoftmaxStats {
  const logp = new Float64Array(n);
  const entropy = new Float64Array(n);
  const logProbs = new Float64Array(n * v);
  for (let r = 0; r < n; r++) {
    const u = Float64Array.from({ length: v }, (_, j) => z[r * v + j]! / t);
    const lse = logSumExp(u);
    let h = 0;
    for (let j = 0; j < v; j++) {
      const lp = u[j]! - lse;
      logProbs[r * v + j] = lp;
      if (lp > -Infinity) h -= Math.exp(lp) * lp;
    }
    logp[r] = logProbs[r * v + targets[r]!]!;
    entropy[r] = h;
  }
  return { logp, entropy, logProbs };
}

/**
 * dL/dz for L = Σ_r dLogp[r]·logp[r] + dEntropy[r]·H[r] of softmaxStats, from u = z / T,
 * ∂logp_t/∂u_j = 1[j = t] − p_j and ∂H/∂u_j = −p_j·(log p_j + H).
 */
export function softmaxStatsGradient(
  z: ArrayLike<number>, n: number, v: number, targets: ArrayLike<number>,
  dLogp: ArrayLike<number>, dEntropy: ArrayLike<number>, t: number,
): Float64Array {
  const { entropy, logProbs } = softmaxStats(z, n, v, targets, t);
  const out = new Float64Array(n * v);
  for (let r = 0; r < n; r++) {
    for (let j = 0; j < v; j++) {
      const lp = logProbs[r * v + j]!;
      const p = Math.exp(lp);
      const entropyTerm = p > 0 ? p * (lp + entropy[r]!) : 0;
      out[r * v + j] = (dLogp[r]! * ((j === targets[r] ? 1 : 0) - p) - dEntropy[r]! * entropyTerm) / t;
    }
  }
  return out;
}

// ---------------------------------------------------------------- 16-bit floats

/** The value of a bf16 bit pattern: the top half of an f32. */
export function bf16BitsToNumber(bits: number): number {
  const view = new DataView(new ArrayBuffer(4));
  view.setUint32(0, (bits & 0xffff) << 16);
  return view.getFloat32(0);
}

/** The value of an IEEE binary16 bit pattern (subnormals, ±Inf, NaN). */
export function f16BitsToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

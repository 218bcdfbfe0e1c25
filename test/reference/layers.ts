// Float64 references of the array operations the tests check the engine against (matmul with
// its bias + activation epilogue, LayerNorm/RMSNorm, attention, RoPE, pixel shuffle, the patch
// convolution), written from the definitions with plain loops and independent of lib/.
//
// Conventions: as in math.ts — float64, inputs ArrayLike<number>, outputs Float64Array, flat
// row-major arrays with their sizes passed explicitly; "rows" are all leading dimensions.
import { gelu, logSumExp, silu } from './math.js';

// ---------------------------------------------------------------- matmul and linear

/** op(A)·op(B) for row-major inputs of the given stored shapes. */
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

export type Activation = 'none' | 'gelu' | 'silu';

const ACTIVATIONS: Record<Activation, (z: number) => number> = { none: (z) => z, gelu, silu };

/** act(op(A)·op(B) + bias) (matmul's epilogue; a Linear layer is A = x, B = W, transB). */
export function linearReference(
  a: ArrayLike<number>, aRows: number, aCols: number, transA: boolean,
  b: ArrayLike<number>, bRows: number, bCols: number, transB: boolean,
  bias: ArrayLike<number> | undefined, act: Activation,
): Float64Array {
  const { out, m, n } = matmulReference(a, aRows, aCols, transA, b, bRows, bCols, transB);
  const activate = ACTIVATIONS[act];
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) out[i * n + j] = activate(out[i * n + j]! + (bias ? bias[j]! : 0));
  }
  return out;
}

// ---------------------------------------------------------------- LayerNorm and RMSNorm

/** LayerNorm (biased variance) of the rows of x [rows, d], or RMSNorm (no centring, no bias) when bias is null. */
export function normReference(x: ArrayLike<number>, w: ArrayLike<number>, bias: ArrayLike<number> | null, d: number, eps: number) {
  const rows = x.length / d;
  const y = new Float64Array(x.length);
  const mean = new Float64Array(rows);
  const rstd = new Float64Array(rows);
  for (let t = 0; t < rows; t++) {
    let mu = 0;
    if (bias) {
      for (let i = 0; i < d; i++) mu += x[t * d + i]!;
      mu /= d;
    }
    let sq = 0;
    for (let i = 0; i < d; i++) sq += (x[t * d + i]! - mu) ** 2;
    const r = 1 / Math.sqrt(sq / d + eps);
    for (let i = 0; i < d; i++) y[t * d + i] = (x[t * d + i]! - mu) * r * w[i]! + (bias ? bias[i]! : 0);
    mean[t] = mu;
    rstd[t] = r;
  }
  return { y, mean, rstd };
}

/**
 * Gradients of normReference (centred: LayerNorm) for the loss Σ dY·y, by the chain rule
 * through x̂ = (x − μ)·r written out per element (independent of the closed form the kernels
 * use): dL/dx_j = r·(g_j − Σ_i g_i·∂μ/∂x_j − x̂_j·Σ_i g_i·x̂_i / D), g = dY·w, ∂μ/∂x_j = 1/D
 * for LayerNorm and 0 for RMSNorm.
 */
export function normBackwardReference(x: ArrayLike<number>, w: ArrayLike<number>, centred: boolean, d: number, eps: number,
  dY: ArrayLike<number>) {
  const { mean, rstd } = normReference(x, w, centred ? new Float64Array(d) : null, d, eps);
  const rows = x.length / d;
  const dx = new Float64Array(x.length);
  const dWeight = new Float64Array(d);
  const dBias = new Float64Array(d);
  for (let t = 0; t < rows; t++) {
    const r = rstd[t]!;
    const xh = (i: number) => (x[t * d + i]! - mean[t]!) * r;
    let sumG = 0;
    let sumGx = 0;
    for (let i = 0; i < d; i++) {
      const g = dY[t * d + i]! * w[i]!;
      sumG += g;
      sumGx += g * xh(i);
      dWeight[i]! += dY[t * d + i]! * xh(i);
      dBias[i]! += dY[t * d + i]!;
    }
    for (let j = 0; j < d; j++) {
      dx[t * d + j] = r * (dY[t * d + j]! * w[j]! - (centred ? sumG / d : 0) - (xh(j) * sumGx) / d);
    }
  }
  return { dx, dWeight, dBias };
}

// ---------------------------------------------------------------- attention

/**
 * One attention problem in the packed layout: q [ΣlensQ, hq, d], k and v [ΣlensK, hkv, d], the
 * sequences one after another (a dense batch [B, S, H, d] is the same memory with equal lengths).
 * Causal masks align the last query with the last key; q head h reads kv head ⌊h / (hq/hkv)⌋.
 */
export interface AttentionProblem {
  hq: number;
  hkv: number;
  d: number;
  causal: boolean;
  /** 1/√d when absent */
  scale?: number;
  lensQ: number[];
  lensK: number[];
}

export interface AttentionReference {
  out: Float64Array;
  /** [hq, ΣlensQ]; −∞ for a query that sees no key */
  lse: Float64Array;
  dq: Float64Array;
  dk: Float64Array;
  dv: Float64Array;
}

/** [0, lens[0], lens[0] + lens[1], …]: where each sequence starts in a packed batch. */
export function offsets(lens: number[]): number[] {
  const cu = [0];
  for (const n of lens) cu.push(cu[cu.length - 1]! + n);
  return cu;
}

/** Softmax attention, and its gradients for the loss Σ dOut·out when dOut is given (else they stay 0). */
export function attentionReference(c: AttentionProblem, q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>,
  dOut?: ArrayLike<number>): AttentionReference {
  const { hq, hkv, d } = c;
  const cuQ = offsets(c.lensQ);
  const cuK = offsets(c.lensK);
  const tq = cuQ[cuQ.length - 1]!;
  const tk = cuK[cuK.length - 1]!;
  const scale = c.scale ?? 1 / Math.sqrt(d);
  const group = hq / hkv;
  const r: AttentionReference = {
    out: new Float64Array(tq * hq * d), lse: new Float64Array(hq * tq),
    dq: new Float64Array(tq * hq * d), dk: new Float64Array(tk * hkv * d), dv: new Float64Array(tk * hkv * d),
  };
  for (let b = 0; b < c.lensQ.length; b++) {
    const sq = c.lensQ[b]!;
    const sk = c.lensK[b]!;
    for (let h = 0; h < hq; h++) {
      const g = Math.floor(h / group);
      for (let i = 0; i < sq; i++) {
        const qi = ((cuQ[b]! + i) * hq + h) * d;
        const seen = c.causal ? Math.max(0, Math.min(sk, i + sk - sq + 1)) : sk;
        const s = new Float64Array(seen);
        for (let j = 0; j < seen; j++) {
          const kj = ((cuK[b]! + j) * hkv + g) * d;
          let dot = 0;
          for (let x = 0; x < d; x++) dot += q[qi + x]! * k[kj + x]!;
          s[j] = scale * dot;
        }
        const lse = logSumExp(s);
        r.lse[h * tq + cuQ[b]! + i] = lse;
        const p = s.map((x) => Math.exp(x - lse));
        for (let j = 0; j < seen; j++) {
          const vj = ((cuK[b]! + j) * hkv + g) * d;
          for (let x = 0; x < d; x++) r.out[qi + x]! += p[j]! * v[vj + x]!;
        }
        if (!dOut) continue;
        // dP = dO·vᵀ, dS = P∘(dP − Σ P∘dP), dq = scale·dS·k, dk = scale·dSᵀ·q, dv = Pᵀ·dO.
        const dp = new Float64Array(seen);
        let delta = 0;
        for (let j = 0; j < seen; j++) {
          const vj = ((cuK[b]! + j) * hkv + g) * d;
          for (let x = 0; x < d; x++) dp[j]! += dOut[qi + x]! * v[vj + x]!;
          delta += p[j]! * dp[j]!;
        }
        for (let j = 0; j < seen; j++) {
          const kj = ((cuK[b]! + j) * hkv + g) * d;
          const ds = p[j]! * (dp[j]! - delta);
          for (let x = 0; x < d; x++) {
            r.dq[qi + x]! += scale * ds * k[kj + x]!;
            r.dk[kj + x]! += scale * ds * q[qi + x]!;
            r.dv[kj + x]! += p[j]! * dOut[qi + x]!;
          }
        }
      }
    }
  }
  return r;
}

// ---------------------------------------------------------------- RoPE

/**
 * rotate_half RoPE of x [T, h, d] at the given positions, angle pos·θ^(−2i/d) for the pair
 * (i, i + d/2); sign −1 rotates by −angle (the backward).
 */
export function ropeReference(x: ArrayLike<number>, pos: ArrayLike<number>, h: number, d: number, theta: number, sign = 1): Float64Array {
  const t = pos.length, half = d / 2;
  const y = new Float64Array(t * h * d);
  for (let r = 0; r < t; r++) {
    for (let i = 0; i < half; i++) {
      const a = pos[r]! * theta ** (-(2 * i) / d);
      const c = Math.cos(a), s = sign * Math.sin(a);
      for (let k = 0; k < h; k++) {
        const at = (r * h + k) * d + i;
        const x1 = x[at]!, x2 = x[at + half]!;
        y[at] = x1 * c - x2 * s;
        y[at + half] = x2 * c + x1 * s;
      }
    }
  }
  return y;
}

// ---------------------------------------------------------------- vision: patches and pixel shuffle

/**
 * InternVL's pixel shuffle (v2) of x [B, h, w, C]: s[b, i, j, k·C + c] = x[b, 2i + ⌊k/2⌋, 2j + k mod 2, c],
 * rows (b, i, j) row-major.
 */
export function pixelShuffleReference(x: ArrayLike<number>, { B, h, w, C }: { B: number; h: number; w: number; C: number }): Float64Array {
  const h2 = h / 2;
  const w2 = w / 2;
  const s = new Float64Array(B * h2 * w2 * 4 * C);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < h2; i++) {
      for (let j = 0; j < w2; j++) {
        for (let k = 0; k < 4; k++) {
          for (let c = 0; c < C; c++) {
            const row = (b * h2 + i) * w2 + j;
            const xi = ((b * h + 2 * i + Math.floor(k / 2)) * w + 2 * j + (k % 2)) * C + c;
            s[row * 4 * C + k * C + c] = x[xi]!;
          }
        }
      }
    }
  }
  return s;
}

/**
 * Conv2d(C, out, p, stride = p) of x [N, C, H, W] with weight [out, C, p, p] and bias [out], as a
 * direct sum over each window; the output [N, out, H/p, W/p] laid out [N, (H/p)·(W/p), out]
 * (one row per patch, as patchify + a Linear layer give it).
 */
export function patchConvReference(x: ArrayLike<number>, [n, c, h, w]: number[], weight: ArrayLike<number>, bias: ArrayLike<number>,
  out: number, p: number): Float64Array {
  const rows = h! / p;
  const cols = w! / p;
  const y = new Float64Array(n! * rows * cols * out);
  for (let b = 0; b < n!; b++) {
    for (let o = 0; o < out; o++) {
      for (let i = 0; i < rows; i++) {
        for (let j = 0; j < cols; j++) {
          let s = bias[o]!;
          for (let ch = 0; ch < c!; ch++) {
            for (let dy = 0; dy < p; dy++) {
              for (let dx = 0; dx < p; dx++) {
                s += weight[((o * c! + ch) * p + dy) * p + dx]! * x[((b * c! + ch) * h! + i * p + dy) * w! + j * p + dx]!;
              }
            }
          }
          y[((b * rows + i) * cols + j) * out + o] = s;
        }
      }
    }
  }
  return y;
}

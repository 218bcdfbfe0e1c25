// Float arrays on the host: bf16 and f16 bit patterns to and from f32 (round to nearest even;
// NaN stays NaN, Inf stays Inf; f16 subnormals exact), any float safetensors tensor widened to
// f32 (checked against the largest buffer the host can hold first), and a count of non-finite
// values.
import { constants as bufferConstants } from 'node:buffer';
import { totalmem } from 'node:os';

import { R1VError } from '../core/errors.js';
import type { SafetensorsTensor } from './safetensors.js';

/** The largest buffer this host can hold: the typed-array limit, and no more than its memory. */
export const MAX_HOST_BYTES = Math.min(bufferConstants.MAX_LENGTH, totalmem());

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** bf16 bit patterns → f32 values (exact). */
export function bf16ToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) outBits[i] = bits[i]! << 16;
  return out;
}

/** f32 values → bf16 bit patterns, round to nearest even; NaN → quiet NaN of the same sign. */
export function f32ToBf16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  const inBits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < values.length; i++) {
    const x = inBits[i]!;
    if ((x & 0x7fffffff) > 0x7f800000) out[i] = (x >>> 16) | 0x0040;
    else out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** f16 bit patterns → f32 values (exact, subnormals included). */
export function f16ToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i]!;
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) {
      out[i] = sign * mant * 2 ** -24;
    } else if (exp === 0x1f) {
      u32[0] = ((h & 0x8000) << 16) | 0x7f800000 | (mant << 13);
      out[i] = f32[0]!;
    } else {
      out[i] = sign * (1024 + mant) * 2 ** (exp - 25);
    }
  }
  return out;
}

/** f32 values → f16 bit patterns, round to nearest even (overflow → ±Inf, tiny → subnormal/±0). */
export function f32ToF16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  const inBits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < values.length; i++) {
    const x = inBits[i]!;
    const sign = (x >>> 16) & 0x8000;
    const abs = x & 0x7fffffff;
    if (abs > 0x7f800000) {
      out[i] = sign | 0x7e00 | ((abs >>> 13) & 0x3ff);
    } else if (abs >= 0x477ff000) {
      // 65520 and above (Inf included) round past the largest f16, 65504.
      out[i] = sign | 0x7c00;
    } else if (abs < 0x38800000) {
      // Below 2^-14: a subnormal count of 2^-24 steps, rounded half to even (may carry into the smallest normal).
      const scaled = Math.abs(values[i]!) * 2 ** 24;
      const floor = Math.floor(scaled);
      const frac = scaled - floor;
      out[i] = sign | (frac > 0.5 || (frac === 0.5 && (floor & 1) === 1) ? floor + 1 : floor);
    } else {
      const h = ((((abs >>> 23) - 112) << 10) | ((abs >>> 13) & 0x3ff)) >>> 0;
      const rest = abs & 0x1fff;
      out[i] = sign | (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1) ? h + 1 : h);
    }
  }
  return out;
}

/** How many of `values` are NaN or ±Inf, and the index of the first (-1 when none). */
export function countNonFinite(values: Float32Array): { count: number; first: number } {
  let count = 0, first = -1;
  for (let i = 0; i < values.length; i++) {
    if (values[i]! - values[i]! !== 0) {
      if (count === 0) first = i;
      count++;
    }
  }
  return { count, first };
}

/**
 * A float tensor's values as f32 (F32 as is, F64 narrowed, BF16/F16 widened); R1VError('DTYPE')
 * otherwise, R1VError('IO') when the f32 copy would exceed MAX_HOST_BYTES.
 */
export function toFloat32(t: SafetensorsTensor): Float32Array {
  if (t.dtype !== 'F32' && t.data.length * 4 > MAX_HOST_BYTES) {
    throw new R1VError('IO', `toFloat32: ${t.data.length} values need ${t.data.length * 4} bytes as f32, more than the largest buffer this host can hold (${MAX_HOST_BYTES} bytes)`);
  }
  switch (t.dtype) {
    case 'F32': return t.data;
    case 'F64': return Float32Array.from(t.data);
    case 'BF16': return bf16ToF32(t.data);
    case 'F16': return f16ToF32(t.data);
    default: throw new R1VError('DTYPE', `toFloat32: ${t.dtype} is not a float dtype`);
  }
}

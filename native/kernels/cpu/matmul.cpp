// CPU f32 GEMM, BLIS style: C is cut into NC-column and KC-deep blocks; op(B)'s block is
// packed into NR-wide micro-panels and op(A)'s MC-row block into MR-tall micro-panels
// (contiguous, zero-padded, aligned), so the register-blocked micro-kernel streams both
// with unit stride whatever the transposes and leading dimensions were. The micro-kernel
// is chosen at run time (AVX-512, AVX2+FMA or portable C++) from cpu_info().isa; the
// x86 paths are compiled with target attributes, so no -march flag is needed. The
// epilogue (bias, pre-activation copy, activation, accumulate) runs on each tile as the
// last k block writes it out, while the tile is still in registers / L1.
#include "../matmul.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>

#include "../../core/cpu_info.h"
#include "../../core/error.h"
#include "../../core/thread_pool.h"
#include "vec_math.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace r1v::cpu {

namespace {

// ---- epilogue ----------------------------------------------------------------------

// The write-out of a finished tile (GemmProblem's epilogue), pointers at the tile's
// top-left element: z = sum + bias[j]; pre[i,j] = z; C[i,j] = act(z), or += act(z).
struct TileEpilogue {
  const float* bias;  // nullptr: none
  float* pre;         // nullptr: not kept; rows ldc apart, like C
  float* c;
  int64_t ldc;
  Activation activation;
  bool accumulate;
};

// The largest tile (AVX-512: 14×32); also the column chunk of the separate pass.
constexpr int kMaxTileFloats = 14 * 32;

constexpr float kSqrtHalf = 0.70710678118654752f;

// −x² + ln(erfc(x)/t) for t = 1/(1 + x/2), x ≥ 0: the Chebyshev fit of Press et al.
// (Numerical Recipes' erfcc), relative error of erfc below 1.2e-7 for every x ≥ 0.
__attribute__((always_inline)) inline float erfc_exponent(float x, float t) {
  float p = 0.17087277f;
  p = std::fma(p, t, -0.82215223f);
  p = std::fma(p, t, 1.48851587f);
  p = std::fma(p, t, -1.13520398f);
  p = std::fma(p, t, 0.27886807f);
  p = std::fma(p, t, -0.18628806f);
  p = std::fma(p, t, 0.09678418f);
  p = std::fma(p, t, 0.37409196f);
  p = std::fma(p, t, 1.00002368f);
  p = std::fma(p, t, -1.26551223f);
  return std::fma(-x, x, p);
}

// z[0:n] ← act(z) in place; w is n floats of scratch. GELU is z·Φ(z) with Φ taken from
// erfc(|z|/√2) (not 1 + erf, which cancels for negative z, leaving no relative accuracy
// in the tail). Inlined into per-ISA wrappers so the loops vectorise for each; the exps
// use vec_math's vectorised exp.
__attribute__((always_inline)) inline void activate_block(float* z, float* w, int64_t n, Activation act) {
  if (act == Activation::Silu) {
    exp_shifted_sum(z, w, n, -1.f, 0.f);  // w = exp(−z)
    for (int64_t i = 0; i < n; ++i) z[i] = z[i] / (1.f + w[i]);
  } else if (act == Activation::Gelu) {
    for (int64_t i = 0; i < n; ++i) {
      const float x = std::fabs(z[i]) * kSqrtHalf, t = 1.f / (1.f + 0.5f * x);
      w[i] = erfc_exponent(x, t);
    }
    exp_shifted_sum(w, w, n, 1.f, 0.f);
    for (int64_t i = 0; i < n; ++i) {
      const float x = std::fabs(z[i]) * kSqrtHalf, t = 1.f / (1.f + 0.5f * x);
      const float half_erfc = 0.5f * t * w[i];  // Φ(−|z|)
      z[i] *= z[i] >= 0.f ? 1.f - half_erfc : half_erfc;
    }
  }
}

// Applies ep to a rows × cols tile of sums held in `tile` (rows ld apart, ld ≥ cols;
// overwritten), first adding `partial` (rows ldp apart) when it is not null.
__attribute__((always_inline)) inline void finish_tile_body(float* tile, int64_t ld, int rows, int cols,
                                                            const float* partial, int64_t ldp,
                                                            const TileEpilogue& ep) {
  for (int r = 0; r < rows; ++r) {
    float* z = tile + r * ld;
    if (partial)
      for (int j = 0; j < cols; ++j) z[j] += partial[r * ldp + j];
    if (ep.bias)
      for (int j = 0; j < cols; ++j) z[j] += ep.bias[j];
    if (ep.pre) std::memcpy(ep.pre + r * ep.ldc, z, sizeof(float) * cols);
  }
  if (ep.activation != Activation::None) {
    float scratch[kMaxTileFloats];
    // Whole rows at once (columns past cols are finite sums of zero padding, or stale
    // values of this tile; either way never stored).
    activate_block(tile, scratch, (rows - 1) * ld + cols, ep.activation);
  }
  for (int r = 0; r < rows; ++r) {
    const float* y = tile + r * ld;
    float* c = ep.c + r * ep.ldc;
    if (ep.accumulate) {
      for (int j = 0; j < cols; ++j) c[j] += y[j];
    } else {
      std::memcpy(c, y, sizeof(float) * cols);
    }
  }
}

void finish_tile_generic(float* tile, int64_t ld, int rows, int cols, const float* partial, int64_t ldp,
                         const TileEpilogue& ep) {
  finish_tile_body(tile, ld, rows, cols, partial, ldp, ep);
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) void finish_tile_avx2(float* tile, int64_t ld, int rows, int cols,
                                                          const float* partial, int64_t ldp, const TileEpilogue& ep) {
  finish_tile_body(tile, ld, rows, cols, partial, ldp, ep);
}

__attribute__((target("avx512f"))) void finish_tile_avx512(float* tile, int64_t ld, int rows, int cols,
                                                           const float* partial, int64_t ldp,
                                                           const TileEpilogue& ep) {
  finish_tile_body(tile, ld, rows, cols, partial, ldp, ep);
}
#endif

// Computes the MR×NR tile D = (add ? D : 0) + Ap·Bp over kc steps, where Ap is a packed
// A micro-panel ([kc][MR]) and Bp holds NR consecutive floats per k step, steps b_stride
// apart (NR for a packed panel, ldb when B is read in place). D (rows ldd apart) is C, or
// where partial sums wait for the last k block. Only the top-left m_valid × n_valid part
// is written. With ep (the last k block), the sums go through the epilogue to ep->c.
using MicroKernel = void (*)(int64_t kc, const float* a, const float* b, int64_t b_stride, float* d, int64_t ldd,
                             bool add, int m_valid, int n_valid, const TileEpilogue* ep);

// Adds (or stores) a full MR×NR tile held in `tile` into D's valid part.
template <int MR, int NR>
inline void write_tile_part(const float* tile, float* d, int64_t ldd, bool add, int m_valid, int n_valid) {
  for (int r = 0; r < m_valid; ++r) {
    float* row = d + r * ldd;
    const float* t = tile + r * NR;
    if (add) {
      for (int j = 0; j < n_valid; ++j) row[j] += t[j];
    } else {
      for (int j = 0; j < n_valid; ++j) row[j] = t[j];
    }
  }
}

// ---- micro-kernels -------------------------------------------------------------------

#if defined(__x86_64__)

// MR rows × 32 columns = 2·MR zmm accumulators (28 of 32 for MR = 14); per k step: two
// loads of B, MR broadcasts of A, 2·MR FMAs, so the FMA units rather than loads bound it.
// A's micro-panel holds A_STRIDE floats per k step: a last, short row block (M = 256 is
// 18 tiles of 14 and 4 rows) runs with MR < A_STRIDE instead of computing padding rows.
template <int MR, int A_STRIDE = MR>
__attribute__((target("avx512f"))) void kernel_avx512(int64_t kc, const float* __restrict a, const float* __restrict b,
                                                      int64_t b_stride, float* c, int64_t ldc, bool accumulate,
                                                      int m_valid, int n_valid, const TileEpilogue* ep) {
  __m512 c0[MR], c1[MR];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    c0[r] = _mm512_setzero_ps();
    c1[r] = _mm512_setzero_ps();
  }
  // Start pulling the C tile in now: it is only needed after the k loop.
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    if (r < m_valid) {
      _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 31), _MM_HINT_T0);
    }
  }
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_loadu_ps(b);
    const __m512 b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const __m512 ar = _mm512_set1_ps(a[r]);
      c0[r] = _mm512_fmadd_ps(ar, b0, c0[r]);
      c1[r] = _mm512_fmadd_ps(ar, b1, c1[r]);
    }
    a += A_STRIDE;
    b += b_stride;
  }
  if (ep) {
    alignas(64) float tile[MR * 32];
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      _mm512_store_ps(tile + r * 32, c0[r]);
      _mm512_store_ps(tile + r * 32 + 16, c1[r]);
    }
    finish_tile_avx512(tile, 32, m_valid, n_valid, accumulate ? c : nullptr, ldc, *ep);
    return;
  }
  // Masks cover the valid columns; masked-off lanes are neither read nor written (and
  // cannot fault), so edge tiles need no staging buffer.
  const __mmask16 mask0 = n_valid >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n_valid) - 1u);
  const __mmask16 mask1 = n_valid >= 32   ? __mmask16(0xFFFF)
                          : n_valid <= 16 ? __mmask16(0)
                                          : __mmask16((1u << (n_valid - 16)) - 1u);
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    if (r < m_valid) {
      float* row = c + r * ldc;
      __m512 v0 = c0[r], v1 = c1[r];
      if (accumulate) {
        v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(mask0, row));
        v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(mask1, row + 16));
      }
      _mm512_mask_storeu_ps(row, mask0, v0);
      _mm512_mask_storeu_ps(row + 16, mask1, v1);
    }
  }
}

// 6 rows × 16 columns = 12 ymm accumulators (of 16), the classic Haswell-class tile.
__attribute__((target("avx2,fma"))) void kernel_avx2_6x16(int64_t kc, const float* __restrict a,
                                                          const float* __restrict b, int64_t b_stride, float* c,
                                                          int64_t ldc, bool accumulate, int m_valid, int n_valid,
                                                          const TileEpilogue* ep) {
  constexpr int MR = 6, NR = 16;
  __m256 c0[MR], c1[MR];
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) {
    c0[r] = _mm256_setzero_ps();
    c1[r] = _mm256_setzero_ps();
  }
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) {
    if (r < m_valid) {
      _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 15), _MM_HINT_T0);
    }
  }
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(b);
    const __m256 b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
      const __m256 ar = _mm256_broadcast_ss(a + r);
      c0[r] = _mm256_fmadd_ps(ar, b0, c0[r]);
      c1[r] = _mm256_fmadd_ps(ar, b1, c1[r]);
    }
    a += MR;
    b += b_stride;
  }
  if (!ep && m_valid == MR && n_valid == NR) {
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
      float* row = c + r * ldc;
      __m256 v0 = c0[r], v1 = c1[r];
      if (accumulate) {
        v0 = _mm256_add_ps(v0, _mm256_loadu_ps(row));
        v1 = _mm256_add_ps(v1, _mm256_loadu_ps(row + 8));
      }
      _mm256_storeu_ps(row, v0);
      _mm256_storeu_ps(row + 8, v1);
    }
    return;
  }
  alignas(32) float tile[MR * NR];
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) {
    _mm256_store_ps(tile + r * NR, c0[r]);
    _mm256_store_ps(tile + r * NR + 8, c1[r]);
  }
  if (ep) {
    finish_tile_avx2(tile, NR, m_valid, n_valid, accumulate ? c : nullptr, ldc, *ep);
    return;
  }
  write_tile_part<MR, NR>(tile, c, ldc, accumulate, m_valid, n_valid);
}

#endif  // __x86_64__

// Portable tile: plain loops over a small accumulator array, which the compiler keeps in
// vector registers of whatever the baseline ISA is (SSE2 on x86-64, NEON on AArch64).
template <int MR, int NR>
void kernel_generic(int64_t kc, const float* __restrict a, const float* __restrict b, int64_t b_stride, float* c,
                    int64_t ldc, bool accumulate, int m_valid, int n_valid, const TileEpilogue* ep) {
  float acc[MR][NR] = {};
  for (int64_t k = 0; k < kc; ++k) {
    for (int r = 0; r < MR; ++r) {
      const float ar = a[r];
      for (int j = 0; j < NR; ++j) acc[r][j] += ar * b[j];
    }
    a += MR;
    b += b_stride;
  }
  if (ep) {
    finish_tile_generic(&acc[0][0], NR, m_valid, n_valid, accumulate ? c : nullptr, ldc, *ep);
    return;
  }
  write_tile_part<MR, NR>(&acc[0][0], c, ldc, accumulate, m_valid, n_valid);
}

// ---- packing -----------------------------------------------------------------------

// The operands as the blocked loops see them: op(A) is [M,K], op(B) is [K,N]; the
// epilogue fields as in GemmProblem.
struct Operands {
  const float* a;
  int64_t lda;
  bool trans_a;
  const float* b;
  int64_t ldb;
  bool trans_b;
  float* c;
  int64_t ldc;
  int64_t k;
  const float* bias;
  float* pre;
  Activation activation;
  bool accumulate;
};

// dst[k][w] = lines[w][k] for k < kc, w < W (0 for w >= valid): gathers W strided rows
// into one [kc][W] micro-panel. Goes 16 k (one cache line of each source row) at a time:
// walking all W rows for every single k would keep W lines live at the same offset,
// which with a power-of-two leading dimension all fall in one L1 set and thrash.
template <int W>
void transpose_into_panel(const float* const* lines, int valid, int64_t kc, float* dst) {
  constexpr int64_t kStep = 16;
  for (int64_t k0 = 0; k0 < kc; k0 += kStep) {
    const int64_t steps = std::min(kStep, kc - k0);
    float* d = dst + k0 * W;
    for (int w = 0; w < valid; ++w) {
      const float* src = lines[w] + k0;
      // W interleaved rows are more streams than the hardware prefetcher follows.
      __builtin_prefetch(src + 2 * kStep);
      for (int64_t k = 0; k < steps; ++k) d[k * W + w] = src[k];
    }
    for (int w = valid; w < W; ++w)
      for (int64_t k = 0; k < steps; ++k) d[k * W + w] = 0.0f;
  }
}

#if defined(__x86_64__)

// GCC 12's AVX-512 shuffle intrinsics start from _mm512_undefined_ps(), which trips a
// false -Wmaybe-uninitialized once inlined here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

// In-register transpose of a 16×16 block: r[i] lane j ← r[j] lane i.
__attribute__((target("avx512f"))) inline void transpose_16x16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    for (int j = 0; j < 2; ++j) {
      const __m512d lo = _mm512_castps_pd(t[i + j]), hi = _mm512_castps_pd(t[i + j + 2]);
      r[i + 2 * j] = _mm512_castpd_ps(_mm512_unpacklo_pd(lo, hi));
      r[i + 2 * j + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(lo, hi));
    }
  }
  for (int i = 0; i < 16; i += 8) {
    for (int j = 0; j < 4; ++j) {
      t[i + j] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0x88);
      t[i + j + 4] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0xdd);
    }
  }
  for (int j = 0; j < 8; ++j) {
    r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
    r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xdd);
  }
}

// transpose_into_panel with 16×16 register transposes: whole cache lines in, whole
// panel rows out, instead of one scalar load and store per element.
template <int W>
__attribute__((target("avx512f"))) void transpose_into_panel_avx512(const float* const* lines, int valid, int64_t kc,
                                                                    float* dst) {
  constexpr int64_t kStep = 16;
  const int64_t whole = kc / kStep * kStep;
  for (int64_t k0 = 0; k0 < whole; k0 += kStep) {
    for (int g = 0; g < W; g += 16) {
      __m512 r[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i) {
        if (g + i < valid) {
          r[i] = _mm512_loadu_ps(lines[g + i] + k0);
          _mm_prefetch(reinterpret_cast<const char*>(lines[g + i] + k0 + 2 * kStep), _MM_HINT_T0);
        } else {
          r[i] = _mm512_setzero_ps();
        }
      }
      transpose_16x16(r);
      const int width = std::min(16, W - g);
      const __mmask16 mask = width == 16 ? __mmask16(0xFFFF) : __mmask16((1u << width) - 1u);
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i) _mm512_mask_storeu_ps(dst + (k0 + i) * W + g, mask, r[i]);
    }
  }
  for (int64_t k = whole; k < kc; ++k)
    for (int w = 0; w < W; ++w) dst[k * W + w] = w < valid ? lines[w][k] : 0.0f;
}

#pragma GCC diagnostic pop

#endif  // __x86_64__

// ---- per-ISA shapes and cache blocking ------------------------------------------------

// MC·KC·4 bytes (the packed A block) should stay in L2 and KC·NC·4 (the packed B block)
// in L3; the B micro-panel (KC·NR·4) is reused by every A micro-panel of the block. KC
// and MC were tuned on Zen 5 (48 KiB L1, 1 MiB L2): a deep KC halves the passes over C.
// transpose_a / transpose_b pack non-transposed A and transposed B (strided gathers);
// kernel(rows) is the micro-kernel for a row block of `rows` ≤ MR valid rows.
#if defined(__x86_64__)
struct Avx512Shape {
  static constexpr int MR = 14, NR = 32;
  static constexpr int64_t KC = 512, MC = 14 * 12, NC = 4096;
  static void transpose_a(const float* const* rows, int valid, int64_t kc, float* dst) {
    transpose_into_panel_avx512<MR>(rows, valid, kc, dst);
  }
  static void transpose_b(const float* const* cols, int valid, int64_t kc, float* dst) {
    transpose_into_panel_avx512<NR>(cols, valid, kc, dst);
  }
  // A short row block runs the kernel for its row count rounded up to even, not for MR.
  static MicroKernel kernel(int rows) {
    switch ((rows + 1) / 2) {
      case 1: return &kernel_avx512<2, MR>;
      case 2: return &kernel_avx512<4, MR>;
      case 3: return &kernel_avx512<6, MR>;
      case 4: return &kernel_avx512<8, MR>;
      case 5: return &kernel_avx512<10, MR>;
      case 6: return &kernel_avx512<12, MR>;
      default: return &kernel_avx512<MR>;
    }
  }
};
struct Avx2Shape {
  static constexpr int MR = 6, NR = 16;
  static constexpr int64_t KC = 256, MC = 6 * 24, NC = 4096;
  static void transpose_a(const float* const* rows, int valid, int64_t kc, float* dst) {
    transpose_into_panel<MR>(rows, valid, kc, dst);
  }
  static void transpose_b(const float* const* cols, int valid, int64_t kc, float* dst) {
    transpose_into_panel<NR>(cols, valid, kc, dst);
  }
  static MicroKernel kernel(int) { return &kernel_avx2_6x16; }
};
#endif
struct GenericShape {
  static constexpr int MR = 6, NR = 8;
  static constexpr int64_t KC = 256, MC = 6 * 16, NC = 2048;
  static void transpose_a(const float* const* rows, int valid, int64_t kc, float* dst) {
    transpose_into_panel<MR>(rows, valid, kc, dst);
  }
  static void transpose_b(const float* const* cols, int valid, int64_t kc, float* dst) {
    transpose_into_panel<NR>(cols, valid, kc, dst);
  }
  static MicroKernel kernel(int) { return &kernel_generic<MR, NR>; }
};

// dst ← ceil(n/W) micro-panels, each [kc][W], from W-wide runs of the rows src + k·ld
// (n floats each); columns past n are zero. Goes 16 rows at a time across all panels: the
// source pages in use stay few (TLB), and each panel gets one contiguous 16·W-float run
// instead of a W-float write per row to every panel (panels kc·W·4 bytes apart, often a
// power of two, share L1 sets).
template <int W>
void copy_into_panels(const float* src, int64_t ld, int64_t n, int64_t kc, float* dst) {
  constexpr int64_t kRows = 16;
  const int64_t whole = n / W * W;
  const int tail = static_cast<int>(n - whole);
  for (int64_t k0 = 0; k0 < kc; k0 += kRows) {
    const int64_t rows = std::min(kRows, kc - k0);
    const float* s = src + k0 * ld;
    float* d = dst + k0 * W;
    // Rows ld apart are separate streams the hardware prefetcher may not follow: fetch
    // the next group while copying this one.
    if (k0 + kRows < kc) {
      const int64_t next_rows = std::min(kRows, kc - k0 - kRows);
      for (int64_t k = 0; k < next_rows; ++k)
        for (int64_t j = 0; j < n; j += 16) __builtin_prefetch(s + (kRows + k) * ld + j);
    }
    for (int64_t j = 0; j < whole; j += W, d += W * kc) {
      for (int64_t k = 0; k < rows; ++k) std::memcpy(d + k * W, s + k * ld + j, sizeof(float) * W);
    }
    if (tail) {
      for (int64_t k = 0; k < rows; ++k)
        for (int c = 0; c < W; ++c) d[k * W + c] = c < tail ? s[k * ld + whole + c] : 0.0f;
    }
  }
}

// Packs op(A)[i0 : i0+mc, p0 : p0+kc] as ceil(mc/MR) micro-panels, each [kc][MR]; rows
// past mc are zero.
template <class Shape>
void pack_a(const Operands& op, int64_t i0, int64_t mc, int64_t p0, int64_t kc, float* dst) {
  constexpr int MR = Shape::MR;
  if (op.trans_a) {
    // A stored [K,M]: each k step of a panel is a contiguous run of MR floats.
    copy_into_panels<MR>(op.a + p0 * op.lda + i0, op.lda, mc, kc, dst);
    return;
  }
  // A stored [M,K]: row r of a panel is contiguous in k.
  for (int64_t ir = 0; ir < mc; ir += MR, dst += MR * kc) {
    const int mr = static_cast<int>(std::min<int64_t>(MR, mc - ir));
    const float* rows[MR];
    for (int r = 0; r < MR; ++r) rows[r] = op.a + (i0 + ir + std::min(r, mr - 1)) * op.lda + p0;
    Shape::transpose_a(rows, mr, kc, dst);
  }
}

// Packs op(B)[p0 : p0+kc, j0 : j0+nc] as ceil(nc/NR) micro-panels, each [kc][NR]; columns
// past nc are zero.
template <class Shape>
void pack_b(const Operands& op, int64_t p0, int64_t kc, int64_t j0, int64_t nc, float* dst) {
  constexpr int NR = Shape::NR;
  if (!op.trans_b) {
    // B stored [K,N]: each k step of a panel is a contiguous run of NR floats.
    copy_into_panels<NR>(op.b + p0 * op.ldb + j0, op.ldb, nc, kc, dst);
    return;
  }
  // B stored [N,K]: column c of a panel is contiguous in k.
  for (int64_t jr = 0; jr < nc; jr += NR, dst += NR * kc) {
    const int nr = static_cast<int>(std::min<int64_t>(NR, nc - jr));
    const float* cols[NR];
    for (int c = 0; c < NR; ++c) cols[c] = op.b + (j0 + jr + std::min(c, nr - 1)) * op.ldb + p0;
    Shape::transpose_b(cols, nr, kc, dst);
  }
}

// Grow-only, 64-byte aligned scratch; one pair per thread so packing needs no locks.
class PackBuffer {
 public:
  PackBuffer() = default;
  PackBuffer(const PackBuffer&) = delete;
  PackBuffer& operator=(const PackBuffer&) = delete;
  ~PackBuffer() { release(); }

  float* get(int64_t floats) {
    if (floats > capacity_) {
      release();
      data_ = static_cast<float*>(::operator new (static_cast<size_t>(floats) * sizeof(float), std::align_val_t{64}));
      capacity_ = floats;
    }
    return data_;
  }

 private:
  void release() {
    if (data_) ::operator delete (data_, std::align_val_t{64});
    data_ = nullptr;
    capacity_ = 0;
  }
  float* data_ = nullptr;
  int64_t capacity_ = 0;
};

thread_local PackBuffer packed_a_buffer;
thread_local PackBuffer packed_b_buffer;

thread_local PackBuffer partial_sum_buffer;

int64_t round_up(int64_t x, int64_t unit) { return (x + unit - 1) / unit * unit; }

// Splits `total` into equal blocks of at most `max_block` (rounded up to `unit`), so a
// size just past a multiple of the block does not leave a thin, inefficient remainder.
int64_t balanced_block(int64_t total, int64_t max_block, int64_t unit) {
  int64_t blocks = (total + max_block - 1) / max_block;
  return std::min(max_block, round_up((total + blocks - 1) / blocks, unit));
}

enum class GemmIsa { Generic, Avx2, Avx512 };

// Follows cpu_info().isa, the one place the path is decided.
GemmIsa gemm_isa() {
  static const GemmIsa isa = [] {
    const std::string& name = cpu_info().isa;
    if (name == "avx512") return GemmIsa::Avx512;
    if (name == "avx2") return GemmIsa::Avx2;
    return GemmIsa::Generic;
  }();
  return isa;
}

void finish_tile(float* tile, int64_t ld, int rows, int cols, const float* partial, int64_t ldp,
                 const TileEpilogue& ep) {
  switch (gemm_isa()) {
#if defined(__x86_64__)
    case GemmIsa::Avx512:
      return finish_tile_avx512(tile, ld, rows, cols, partial, ldp, ep);
    case GemmIsa::Avx2:
      return finish_tile_avx2(tile, ld, rows, cols, partial, ldp, ep);
#endif
    default:
      return finish_tile_generic(tile, ld, rows, cols, partial, ldp, ep);
  }
}

// The epilogue of rows [m0, m1), columns [n0, n1) of C from `product` (laid out like C,
// may alias C or pre), or from zeros when product is null, in row chunks of at most
// kMaxTileFloats.
void epilogue_rows(const Operands& op, const float* product, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  float tile[kMaxTileFloats];
  for (int64_t i = m0; i < m1; ++i) {
    for (int64_t j = n0; j < n1; j += kMaxTileFloats) {
      const int cols = static_cast<int>(std::min<int64_t>(kMaxTileFloats, n1 - j));
      if (product) {
        std::memcpy(tile, product + i * op.ldc + j, sizeof(float) * cols);
      } else {
        std::fill(tile, tile + cols, 0.0f);
      }
      const TileEpilogue ep{op.bias ? op.bias + j : nullptr, op.pre ? op.pre + i * op.ldc + j : nullptr,
                            op.c + i * op.ldc + j, op.ldc, op.activation, op.accumulate};
      finish_tile(tile, cols, 1, cols, nullptr, 0, ep);
    }
  }
}

// ---- blocked loops over one region of C ----------------------------------------------

// C[m0:m1, n0:n1] = op(A)[m0:m1, :] · op(B)[:, n0:n1] with the epilogue, serially on the
// calling thread.
template <class Shape>
void gemm_region(const Operands& op, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  constexpr int MR = Shape::MR, NR = Shape::NR;
  const int64_t m = m1 - m0, n = n1 - n0, k = op.k;
  if (m <= 0 || n <= 0) return;
  const bool has_epilogue = op.bias || op.pre || op.activation != Activation::None || op.accumulate;
  if (k == 0) {
    if (has_epilogue) {
      epilogue_rows(op, nullptr, m0, m1, n0, n1);
    } else {
      for (int64_t i = m0; i < m1; ++i) std::fill(op.c + i * op.ldc + n0, op.c + i * op.ldc + n1, 0.0f);
    }
    return;
  }
  const int64_t kc_max = balanced_block(k, Shape::KC, 1);
  const int64_t mc_max = balanced_block(m, Shape::MC, MR);
  const int64_t nc_max = balanced_block(n, Shape::NC, NR);
  // When all rows fit one MC block, each packed B panel would be read exactly once, so
  // packing would only add a copy of B: the kernel then reads [K,N] B where it lies (its
  // NR floats per k step are contiguous) and only a ragged last panel is packed.
  const bool b_in_place = !op.trans_b && m <= Shape::MC;
  float* packed_a = packed_a_buffer.get(round_up(mc_max, MR) * kc_max);
  float* packed_b = packed_b_buffer.get((b_in_place ? NR : round_up(nc_max, NR)) * kc_max);

  // Where the sums of the k blocks before the last one wait (D of the micro-kernel). C
  // itself, unless C must keep its old values for `accumulate`: then pre_activation
  // (overwritten anyway); without it and without an activation, C + Σ + bias is the
  // answer, so the first block adds to C and the epilogue stores; else (an activation
  // and several k blocks) a per-thread buffer of nc_max columns.
  float* partial = op.c;
  int64_t ldp = op.ldc;
  bool add_first = false, final_accumulate = op.accumulate, partial_in_buffer = false;
  if (op.accumulate) {
    if (op.pre) {
      partial = op.pre;
    } else if (op.activation == Activation::None) {
      add_first = true;
      final_accumulate = false;
    } else if (kc_max < k) {
      partial_in_buffer = true;
      ldp = nc_max;
      partial = partial_sum_buffer.get(m * nc_max);
    }
  }
  // Pure accumulation (C += product) needs no epilogue: adding to C is what D does.
  const bool use_epilogue = op.bias || op.pre || op.activation != Activation::None || final_accumulate;

  for (int64_t jc = n0; jc < n1; jc += nc_max) {
    const int64_t nc = std::min(nc_max, n1 - jc);
    const int64_t nc_whole_panels = nc / NR * NR;
    auto partial_at = [&](int64_t row, int64_t col) {
      return partial_in_buffer ? partial + (row - m0) * ldp + (col - jc) : partial + row * ldp + col;
    };
    for (int64_t pc = 0; pc < k; pc += kc_max) {
      const int64_t kc = std::min(kc_max, k - pc);
      const bool add = pc > 0 || add_first;  // the first k block overwrites D
      const bool last = pc + kc >= k;
      if (!b_in_place) {
        pack_b<Shape>(op, pc, kc, jc, nc, packed_b);
      } else if (nc_whole_panels < nc) {
        pack_b<Shape>(op, pc, kc, jc + nc_whole_panels, nc - nc_whole_panels, packed_b);
      }
      for (int64_t ic = m0; ic < m1; ic += mc_max) {
        const int64_t mc = std::min(mc_max, m1 - ic);
        pack_a<Shape>(op, ic, mc, pc, kc, packed_a);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const int n_valid = static_cast<int>(std::min<int64_t>(NR, nc - jr));
          const float* b_panel = packed_b + jr * kc;
          int64_t b_stride = NR;
          if (b_in_place) {
            if (n_valid == NR) {
              b_panel = op.b + pc * op.ldb + jc + jr;
              b_stride = op.ldb;
            } else {
              b_panel = packed_b;
            }
          }
          for (int64_t ir = 0; ir < mc; ir += MR) {
            const int m_valid = static_cast<int>(std::min<int64_t>(MR, mc - ir));
            const int64_t row = ic + ir, col = jc + jr;
            // The next tile's D rows are ldp apart, beyond the hardware prefetchers'
            // reach; asking now hides their latency behind this tile's k loop.
            if (ir + MR < mc) {
              const float* next = partial_at(row + MR, col);
              const int next_rows = static_cast<int>(std::min<int64_t>(MR, mc - ir - MR));
              for (int r = 0; r < next_rows; ++r) {
                __builtin_prefetch(next + r * ldp, 1, 3);
                __builtin_prefetch(next + r * ldp + n_valid - 1, 1, 3);
              }
            }
            TileEpilogue ep;
            if (last && use_epilogue) {
              ep = TileEpilogue{op.bias ? op.bias + col : nullptr, op.pre ? op.pre + row * op.ldc + col : nullptr,
                                op.c + row * op.ldc + col, op.ldc, op.activation, final_accumulate};
            }
            Shape::kernel(m_valid)(kc, packed_a + ir * kc, b_panel, b_stride, partial_at(row, col), ldp, add, m_valid, n_valid,
                   last && use_epilogue ? &ep : nullptr);
          }
        }
      }
    }
  }
}

// ---- work split over the pool ---------------------------------------------------------

// Below this much work per thread, handing work to another thread costs more than it
// saves: a pool round trip is ~5-10 µs while workers spin between regions (~40 µs from
// parked), against ~15 µs for 4 MFLOP on one AVX-512 core.
constexpr double kMinFlopsPerThread = 4.0e6;

// How one matrix is cut into rows × cols pieces for `pieces` threads.
struct Grid {
  int rows = 1, cols = 1;
};

// Picks the factorisation whose largest piece (in whole MR×NR tiles) is smallest; on a
// tie, the one with the least packing (rows + cols of a piece).
Grid choose_grid(int pieces, int64_t m, int64_t n, int mr, int nr) {
  const int64_t m_tiles = (m + mr - 1) / mr, n_tiles = (n + nr - 1) / nr;
  Grid best;
  int64_t best_area = -1, best_perimeter = 0;
  for (int rows = 1; rows <= pieces; ++rows) {
    if (pieces % rows) continue;
    const int cols = pieces / rows;
    const int64_t piece_m = (m_tiles + rows - 1) / rows * mr;
    const int64_t piece_n = (n_tiles + cols - 1) / cols * nr;
    const int64_t area = piece_m * piece_n, perimeter = piece_m + piece_n;
    if (best_area < 0 || area < best_area || (area == best_area && perimeter < best_perimeter)) {
      best = {rows, cols};
      best_area = area;
      best_perimeter = perimeter;
    }
  }
  return best;
}

// Batch entry i of p.
Operands operands_of(const GemmProblem& p, int64_t i) {
  return Operands{static_cast<const float*>(p.a) + i * p.stride_a,
                  p.lda,
                  p.trans_a,
                  static_cast<const float*>(p.b) + i * p.stride_b,
                  p.ldb,
                  p.trans_b,
                  static_cast<float*>(p.c) + i * p.stride_c,
                  p.ldc,
                  p.k,
                  static_cast<const float*>(p.bias),
                  p.pre_activation ? static_cast<float*>(p.pre_activation) + i * p.stride_c : nullptr,
                  p.activation,
                  p.accumulate};
}

template <class Shape>
void gemm_batched(const GemmProblem& p) {
  constexpr int MR = Shape::MR, NR = Shape::NR;
  ThreadPool& pool = ThreadPool::global();
  const double flops = 2.0 * double(p.batch) * double(p.m) * double(p.n) * double(std::max<int64_t>(p.k, 1));
  const int active = static_cast<int>(std::clamp<double>(flops / kMinFlopsPerThread, 1.0, double(pool.num_threads())));

  // Many matrices: whole matrices per thread (no duplicated packing). Few, or a count
  // that would leave threads unevenly loaded: every matrix is split over all threads.
  const bool whole_matrices = p.batch % active == 0 || p.batch >= 4 * active;
  const int pieces = whole_matrices ? 1 : active;
  const Grid grid = choose_grid(pieces, p.m, p.n, MR, NR);
  const int64_t m_tiles = (p.m + MR - 1) / MR, n_tiles = (p.n + NR - 1) / NR;
  const int64_t units = p.batch * pieces;

  auto work = [&](int thread, int) {
    if (thread >= active) return;
    const int64_t begin = units * thread / active, end = units * (thread + 1) / active;
    for (int64_t u = begin; u < end; ++u) {
      const int64_t i = u / pieces;
      const int piece = static_cast<int>(u % pieces);
      const int pr = piece / grid.cols, pc = piece % grid.cols;
      const int64_t m0 = std::min(p.m, m_tiles * pr / grid.rows * MR);
      const int64_t m1 = std::min(p.m, m_tiles * (pr + 1) / grid.rows * MR);
      const int64_t n0 = std::min(p.n, n_tiles * pc / grid.cols * NR);
      const int64_t n1 = std::min(p.n, n_tiles * (pc + 1) / grid.cols * NR);
      gemm_region<Shape>(operands_of(p, i), m0, m1, n0, n1);
    }
  };
  if (active == 1) {
    work(0, 1);
  } else {
    pool.run(work);
  }
}

// op(A)·Bᵀ for at most kFewRows rows of A, B stored [N, K] (a Linear's weight; decode steps
// have one row per sequence). Each output is a dot product of two contiguous rows, so B is
// read once where it lies; the blocked path would first pack (copy) all of B, which for so
// few rows costs more than the product.
constexpr int64_t kFewRows = 4;
constexpr int64_t kFewRowsColumns = kMaxTileFloats / kFewRows;

void gemm_few_rows(const GemmProblem& p) {
  const int64_t chunks = (p.n + kFewRowsColumns - 1) / kFewRowsColumns;
  ThreadPool::global().parallel_for(p.batch * chunks, 1, [&](int64_t u0, int64_t u1) {
    float tile[kMaxTileFloats];
    for (int64_t u = u0; u < u1; ++u) {
      const Operands op = operands_of(p, u / chunks);
      const int64_t j0 = (u % chunks) * kFewRowsColumns;
      const int cols = static_cast<int>(std::min(kFewRowsColumns, p.n - j0));
      const int rows = static_cast<int>(p.m);
      for (int r = 0; r < rows; ++r)
        for (int j = 0; j < cols; ++j) tile[r * cols + j] = dot(op.a + r * op.lda, op.b + (j0 + j) * op.ldb, op.k);
      const TileEpilogue ep{op.bias ? op.bias + j0 : nullptr, op.pre ? op.pre + j0 : nullptr, op.c + j0, op.ldc,
                            op.activation, op.accumulate};
      finish_tile(tile, cols, rows, cols, nullptr, 0, ep);
    }
  });
}

}  // namespace

void gemm_builtin(const GemmProblem& p) {
  R1V_CHECK(p.dtype == DType::F32, DType, "gemm_builtin: f32 only, got ", dtype_name(p.dtype));
  R1V_CHECK(p.batch >= 0 && p.m >= 0 && p.n >= 0 && p.k >= 0, Argument, "gemm_builtin: negative size");
  if (p.batch == 0 || p.m == 0 || p.n == 0) return;
  if (!p.trans_a && p.trans_b && p.m <= kFewRows) return gemm_few_rows(p);
  switch (gemm_isa()) {
#if defined(__x86_64__)
    case GemmIsa::Avx512:
      gemm_batched<Avx512Shape>(p);
      return;
    case GemmIsa::Avx2:
      gemm_batched<Avx2Shape>(p);
      return;
#endif
    default:
      gemm_batched<GenericShape>(p);
      return;
  }
}

void gemm_epilogue(const GemmProblem& p, const float* product) {
  R1V_CHECK(p.dtype == DType::F32, DType, "gemm_epilogue: f32 only, got ", dtype_name(p.dtype));
  if (p.batch == 0 || p.m == 0 || p.n == 0) return;
  const int64_t rows_per_task = std::max<int64_t>(1, 65536 / p.n);
  ThreadPool::global().parallel_for(p.batch * p.m, rows_per_task, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1;) {
      const int64_t i = r / p.m, row = r % p.m, rows = std::min(r1 - r, p.m - row);
      epilogue_rows(operands_of(p, i), product + i * p.stride_c, row, row + rows, 0, p.n);
      r += rows;
    }
  });
}

}  // namespace r1v::cpu

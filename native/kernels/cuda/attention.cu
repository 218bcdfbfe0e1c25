// CUDA attention, flash-style: each block owns a tile of query rows (forward) or of key
// rows (backward) and streams the other side through shared memory, so no Sq×Sk matrix
// ever exists. One kernel body serves f32, bf16 and f16: every product is a warp-level
// 16×N tile product (warp_mma) whose accumulator uses the register layout of
// mma.sync.m16n8k16 — tensor cores for bf16/f16, plain f32 FMA for f32 (no TF32) — so
// the masking and online-softmax code that works on those registers is shared.
//
// Register layout of a warp's 16×N accumulator float acc[N/8][4] (g = lane/4, t = lane%4):
//   acc[j][e] is element (row g + 8·(e/2), column 8·j + 2·t + e%2).
//
// Head dims are padded to a bucket (64, 128, 256) with zeros in shared memory, so any
// D ≤ 256 divisible by 8 works; 64 and 128 are the tuned sizes.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "../../core/dtype.h"
#include "../../core/error.h"
#include "../attention.h"
#include "cuda_common.cuh"

namespace r1v::cuda {

namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
// Largest opt-in dynamic shared memory per block on sm_80 (sm_90 allows 227 KiB).
constexpr int kMaxSharedBytes = 163 * 1024;

// ---------------------------------------------------------------------------------
// Warp-level tile products.

__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Four 8×8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i. Register i
// gets matrix i: lane holds (row lane/4, columns 2·(lane%4), +1), or with .trans
// (rows 2·(lane%4), +1, column lane/4).
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(row))
               : "memory");
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(row))
               : "memory");
}

// c (16×8, f32) += a (16×16) · b (16×8).
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1,
                                          __nv_bfloat16) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1, __half) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// acc (16×N) += A (16×k_size) · B (k_size×N), both in shared memory; k_size is a
// multiple of 16. A(m, k) is a[m·lda + k], or a[k·lda + m] when kATransposed.
// B(k, n) is b[k·ldb + n] when kBRowMajor, else b[n·ldb + k]. For the 16-bit types all
// row addresses must be 16-byte aligned (leading dimensions a multiple of 8 elements).
template <int N, bool kATransposed, bool kBRowMajor, typename T>
__device__ __forceinline__ void warp_mma(float (&acc)[N / 8][4], const T* a, int lda, const T* b, int ldb, int k_size) {
  static_assert(N % 16 == 0, "N must be a multiple of 16");
  const int lane = threadIdx.x % 32;
  if constexpr (sizeof(T) == 4) {
    const int g = lane / 4, t = lane % 4;
    for (int k = 0; k < k_size; ++k) {
      const float a_lo = kATransposed ? a[k * lda + g] : a[g * lda + k];
      const float a_hi = kATransposed ? a[k * lda + g + 8] : a[(g + 8) * lda + k];
#pragma unroll
      for (int j = 0; j < N / 8; ++j) {
        const int n = 8 * j + 2 * t;
        const float b0 = kBRowMajor ? b[k * ldb + n] : b[n * ldb + k];
        const float b1 = kBRowMajor ? b[k * ldb + n + 1] : b[(n + 1) * ldb + k];
        acc[j][0] = fmaf(a_lo, b0, acc[j][0]);
        acc[j][1] = fmaf(a_lo, b1, acc[j][1]);
        acc[j][2] = fmaf(a_hi, b0, acc[j][2]);
        acc[j][3] = fmaf(a_hi, b1, acc[j][3]);
      }
    }
  } else {
    // Matrix i = lane/8 of each ldmatrix.x4 is addressed by row r8 (+8 when selected).
    const int i = lane / 8, r8 = lane % 8;
    for (int k0 = 0; k0 < k_size; k0 += 16) {
      // A fragment registers: (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15).
      uint32_t af[4];
      if constexpr (kATransposed)
        ldmatrix_x4_trans(af, a + (k0 + r8 + (i / 2) * 8) * lda + (i % 2) * 8);
      else
        ldmatrix_x4(af, a + (r8 + (i % 2) * 8) * lda + k0 + (i / 2) * 8);
#pragma unroll
      for (int n = 0; n < N / 16; ++n) {
        // B fragment registers: (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15).
        uint32_t bf[4];
        if constexpr (kBRowMajor)
          ldmatrix_x4_trans(bf, b + (k0 + r8 + (i % 2) * 8) * ldb + n * 16 + (i / 2) * 8);
        else
          ldmatrix_x4(bf, b + (n * 16 + r8 + (i / 2) * 8) * ldb + k0 + (i % 2) * 8);
        mma_16816(acc[2 * n], af, bf[0], bf[1], T{});
        mma_16816(acc[2 * n + 1], af, bf[2], bf[3], T{});
      }
    }
  }
}

template <int N>
__device__ __forceinline__ void zero(float (&acc)[N][4]) {
#pragma unroll
  for (int j = 0; j < N; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[j][e] = 0.f;
}

// ---------------------------------------------------------------------------------
// Problem addressing.

// Copies `rows` rows × `dim` columns (row pitch src_ld elements) into a kRows × kCols
// shared tile with row pitch kLd, zero-filling the rest. 16-byte vectors: the op
// guarantees D % 8 == 0 and the host checks that the base pointers are 16-byte aligned.
template <typename T, int kRows, int kCols, int kLd, int kThreads>
__device__ __forceinline__ void load_tile(T* dst, const T* src, int64_t src_ld, int64_t rows, int dim) {
  constexpr int kVec = 16 / static_cast<int>(sizeof(T));
  constexpr int kVecsPerRow = kCols / kVec;
  static_assert(kCols % kVec == 0 && (kLd * sizeof(T)) % 16 == 0, "16-byte vectors");
  for (int e = threadIdx.x; e < kRows * kVecsPerRow; e += kThreads) {
    const int r = e / kVecsPerRow, c = (e % kVecsPerRow) * kVec;
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    if (r < rows && c < dim) v = *reinterpret_cast<const uint4*>(src + r * src_ld + c);
    *reinterpret_cast<uint4*>(dst + r * kLd + c) = v;
  }
}

// Index of (sequence b, head h, query i) in lse and delta.
__device__ __forceinline__ int64_t lse_index(const AttentionProblem& p, int64_t b, int64_t h, int64_t i) {
  return b * p.lse_stride_b + h * p.lse_stride_h + (p.lse_packed ? p.cu_q[b] : 0) + i;
}

// One work item of a kernel: a tile of one (sequence, head).
struct TileItem {
  int64_t b, head, tile;
};

__device__ __forceinline__ TileItem tile_item(int64_t item, int64_t heads, int64_t tiles) {
  const int64_t bh = item / tiles;
  return TileItem{bh / heads, bh % heads, item % tiles};
}

constexpr int round_up(int v, int m) { return (v + m - 1) / m * m; }

// ---------------------------------------------------------------------------------
// Forward. Block: kWarps warps, 16 query rows each (kBlockM rows), one (sequence, head,
// query tile) per work item; key tiles of kBlockN rows stream through shared memory.
// Shared: Q [kBlockM][kLd], K and V [kBlockN][kLd], P [kBlockM][kLdP] (each warp its rows).

template <typename T, int kD>
struct ForwardTiles {
  static constexpr int kWarps = 4;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kBlockM = 16 * kWarps;
  static constexpr int kBlockN = (sizeof(T) == 4 && kD == 256) ? 32 : 64;
  static constexpr int kPad = 16 / static_cast<int>(sizeof(T));  // 16 bytes: ldmatrix rows on distinct banks
  static constexpr int kLd = kD + kPad;
  static constexpr int kLdP = kBlockN + kPad;
  static constexpr int kSharedBytes =
      static_cast<int>(sizeof(T)) * (kBlockM * kLd + 2 * kBlockN * kLd + kBlockM * kLdP);
  static_assert(kSharedBytes <= kMaxSharedBytes, "forward tiles exceed shared memory");
};

template <typename T, int kD>
__global__ void __launch_bounds__(ForwardTiles<T, kD>::kThreads) attention_forward_kernel(const AttentionProblem p) {
  using Tiles = ForwardTiles<T, kD>;
  constexpr int kThreads = Tiles::kThreads, kBlockM = Tiles::kBlockM, kBlockN = Tiles::kBlockN;
  constexpr int kLd = Tiles::kLd, kLdP = Tiles::kLdP;
  extern __shared__ __align__(16) unsigned char shared[];
  T* q_s = reinterpret_cast<T*>(shared);
  T* k_s = q_s + kBlockM * kLd;
  T* v_s = k_s + kBlockN * kLd;
  T* p_s = v_s + kBlockN * kLd;

  const T* q = static_cast<const T*>(p.q);
  const T* k = static_cast<const T*>(p.k);
  const T* v = static_cast<const T*>(p.v);
  T* out = static_cast<T*>(p.out);
  const int dim = static_cast<int>(p.head_dim);
  const int dim16 = round_up(dim, 16);
  const int64_t group = p.heads_q / p.heads_kv;
  const float scale_log2 = p.scale * kLog2e;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int warp_row = 16 * warp;

  const int64_t tiles = (p.max_seqlen_q + kBlockM - 1) / kBlockM;
  const int64_t items = p.batch * p.heads_q * tiles;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const TileItem it = tile_item(item, p.heads_q, tiles);
    const int64_t q_begin = p.cu_q[it.b], sq = p.cu_q[it.b + 1] - q_begin;
    const int64_t k_begin = p.cu_k[it.b];
    const int64_t sk = p.used_k ? p.used_k[it.b] : p.cu_k[it.b + 1] - k_begin;  // a KV cache uses a prefix
    const int64_t i0 = it.tile * kBlockM;
    if (i0 >= sq) continue;  // uniform over the block
    const int64_t h = it.head, hk = h / group;
    const int64_t rows = std::min<int64_t>(kBlockM, sq - i0);
    // Causal: query i sees keys j ≤ i + shift; the tile's last row bounds the keys read.
    const int64_t shift = sk - sq;
    const int64_t key_end = p.causal ? std::clamp<int64_t>(i0 + rows + shift, 0, sk) : sk;

    __syncthreads();  // the previous item's readers of the tiles are done
    load_tile<T, kBlockM, kD, kLd, kThreads>(q_s, q + ((q_begin + i0) * p.heads_q + h) * dim, p.heads_q * dim, rows,
                                             dim);

    float o[kD / 8][4];
    zero(o);
    // Per thread, rows g and g+8 of the warp: running max (log2 domain, scaled) and the
    // thread's partial sum of exponentials (summed over the row's 4 lanes at the end).
    float m_run[2] = {-INFINITY, -INFINITY}, l_part[2] = {0.f, 0.f};

    for (int64_t n0 = 0; n0 < key_end; n0 += kBlockN) {
      __syncthreads();  // K/V/P of the previous key tile are no longer read
      const int keys = static_cast<int>(std::min<int64_t>(kBlockN, sk - n0));
      load_tile<T, kBlockN, kD, kLd, kThreads>(k_s, k + ((k_begin + n0) * p.heads_kv + hk) * dim, p.heads_kv * dim,
                                               keys, dim);
      load_tile<T, kBlockN, kD, kLd, kThreads>(v_s, v + ((k_begin + n0) * p.heads_kv + hk) * dim, p.heads_kv * dim,
                                               keys, dim);
      __syncthreads();

      float s[kBlockN / 8][4];
      zero(s);
      warp_mma<kBlockN, false, false>(s, q_s + warp_row * kLd, kLd, k_s, kLd, dim16);

      // Row r sees the tile's keys [0, visible_keys[r]).
      int visible_keys[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int64_t i = i0 + warp_row + g + 8 * r;
        visible_keys[r] = p.causal ? static_cast<int>(std::clamp<int64_t>(i + shift - n0 + 1, 0, keys)) : keys;
      }
      float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
      for (int j = 0; j < kBlockN / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const bool visible = 8 * j + 2 * t + e % 2 < visible_keys[e / 2];
          s[j][e] = visible ? s[j][e] * scale_log2 : -INFINITY;
          tile_max[e / 2] = fmaxf(tile_max[e / 2], s[j][e]);
        }
      float base[2], alpha[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
        tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
        const float m_new = fmaxf(m_run[r], tile_max[r]);
        // A row with no visible key so far keeps max −inf; exponentiate against 0 then,
        // which gives p = 0 and alpha = 0 instead of NaN.
        base[r] = m_new == -INFINITY ? 0.f : m_new;
        alpha[r] = exp2f(m_run[r] - base[r]);
        m_run[r] = m_new;
        l_part[r] *= alpha[r];
      }
#pragma unroll
      for (int j = 0; j < kBlockN / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float pr = exp2f(s[j][e] - base[e / 2]);
          l_part[e / 2] += pr;
          p_s[(warp_row + g + 8 * (e / 2)) * kLdP + 8 * j + 2 * t + e % 2] = from_float<T>(pr);
        }
#pragma unroll
      for (int j = 0; j < kD / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) o[j][e] *= alpha[e / 2];
      __syncwarp();  // the warp's P rows are written
      warp_mma<kD, false, true>(o, p_s + warp_row * kLdP, kLdP, v_s, kLd, kBlockN);
    }

    float* lse = p.lse;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float l = l_part[r];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      const int64_t i = i0 + warp_row + g + 8 * r;
      if (i >= sq) continue;
      const float inv = l > 0.f ? 1.f / l : 0.f;  // no visible key: out 0, lse −inf
      T* out_row = out + ((q_begin + i) * p.heads_q + h) * dim;
#pragma unroll
      for (int j = 0; j < kD / 8; ++j)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int col = 8 * j + 2 * t + c;
          if (col < dim) out_row[col] = from_float<T>(o[j][2 * r + c] * inv);
        }
      if (t == 0) lse[lse_index(p, it.b, h, i)] = l > 0.f ? m_run[r] * kLn2 + logf(l) : -INFINITY;
    }
  }
}

// ---------------------------------------------------------------------------------
// Backward.

// δ = rowsum(dO ∘ O) per (query row, head), laid out like lse; one warp per row.
constexpr int kDeltaWarps = 8;

template <typename T>
__global__ void __launch_bounds__(32 * kDeltaWarps) attention_delta_kernel(const AttentionProblem p) {
  const T* out = static_cast<const T*>(p.out);
  const T* d_out = static_cast<const T*>(p.d_out);
  const int lane = threadIdx.x % 32;
  const int64_t rows = p.batch * p.heads_q * p.max_seqlen_q;
  const int64_t step = static_cast<int64_t>(gridDim.x) * kDeltaWarps;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kDeltaWarps + threadIdx.x / 32; row < rows; row += step) {
    const TileItem it = tile_item(row, p.heads_q, p.max_seqlen_q);  // tile = query index
    const int64_t q_begin = p.cu_q[it.b], sq = p.cu_q[it.b + 1] - q_begin;
    if (it.tile >= sq) continue;  // uniform over the warp
    const int64_t offset = ((q_begin + it.tile) * p.heads_q + it.head) * p.head_dim;
    float acc = 0.f;
    for (int64_t d = lane; d < p.head_dim; d += 32) acc += to_float(out[offset + d]) * to_float(d_out[offset + d]);
    acc = warp_sum(acc);
    if (lane == 0) p.delta[lse_index(p, it.b, it.head, it.tile)] = acc;
  }
}

// Block: kWarps warps, 16 key rows each (kBlockN keys), one (sequence, kv head, key tile)
// per work item. It loops over the query heads of the kv head's group and over query
// tiles of kBlockM rows, keeping dK and dV in registers (so they sum over the group
// without atomics) and adding dQ into an f32 accumulator with atomicAdd. With S = Q·Kᵀ:
//   Pᵀ = exp(scale·Sᵀ − lse), dPᵀ = V·dOᵀ, dSᵀ = Pᵀ ∘ (dPᵀ − δ),
//   dV += Pᵀ·dO, dK += scale·dSᵀ·Q, dQ += scale·dS·K.
// Shared: lse·log2e and δ [kBlockM] f32, K and V [kBlockN][kLd], Q and dO [kBlockM][kLd],
// Pᵀ and dSᵀ [kBlockN][kLdP] (keys × queries).
template <typename T, int kD>
struct BackwardTiles {
  static constexpr bool kF32 = sizeof(T) == 4;
  static constexpr int kWarps = kD == 256 ? 2 : 4;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kBlockN = 16 * kWarps;
  static constexpr int kBlockM = (kF32 && kD > 64) ? 32 : 64;
  static constexpr int kDqChunk = 64;  // dQ columns per pass, to bound registers
  static constexpr int kPad = 16 / static_cast<int>(sizeof(T));
  static constexpr int kLd = kD + kPad;
  static constexpr int kLdP = kBlockM + kPad;
  static constexpr int kSharedBytes =
      2 * kBlockM * 4 + static_cast<int>(sizeof(T)) * (2 * kBlockN * kLd + 2 * kBlockM * kLd + 2 * kBlockN * kLdP);
  static_assert(kSharedBytes <= kMaxSharedBytes, "backward tiles exceed shared memory");
  static_assert(kBlockM % 16 == 0 && kD % kDqChunk == 0, "tile shapes");
};

template <typename T, int kD>
__global__ void __launch_bounds__(BackwardTiles<T, kD>::kThreads)
    attention_backward_kernel(const AttentionProblem p, float* dq_accum) {
  using Tiles = BackwardTiles<T, kD>;
  constexpr int kThreads = Tiles::kThreads, kWarps = Tiles::kWarps;
  constexpr int kBlockM = Tiles::kBlockM, kBlockN = Tiles::kBlockN, kDqChunk = Tiles::kDqChunk;
  constexpr int kLd = Tiles::kLd, kLdP = Tiles::kLdP;
  extern __shared__ __align__(16) unsigned char shared[];
  float* lse_s = reinterpret_cast<float*>(shared);
  float* delta_s = lse_s + kBlockM;
  T* k_s = reinterpret_cast<T*>(delta_s + kBlockM);
  T* v_s = k_s + kBlockN * kLd;
  T* q_s = v_s + kBlockN * kLd;
  T* do_s = q_s + kBlockM * kLd;
  T* pt_s = do_s + kBlockM * kLd;
  T* dst_s = pt_s + kBlockN * kLdP;

  const T* q = static_cast<const T*>(p.q);
  const T* k = static_cast<const T*>(p.k);
  const T* v = static_cast<const T*>(p.v);
  const T* d_out = static_cast<const T*>(p.d_out);
  T* dk_out = static_cast<T*>(p.dk);
  T* dv_out = static_cast<T*>(p.dv);
  const int dim = static_cast<int>(p.head_dim);
  const int dim16 = round_up(dim, 16);
  const int64_t group = p.heads_q / p.heads_kv;
  const float scale_log2 = p.scale * kLog2e;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int warp_row = 16 * warp;  // the warp's key rows within the tile

  const int64_t tiles = (p.max_seqlen_k + kBlockN - 1) / kBlockN;
  const int64_t items = p.batch * p.heads_kv * tiles;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const TileItem it = tile_item(item, p.heads_kv, tiles);
    const int64_t q_begin = p.cu_q[it.b], sq = p.cu_q[it.b + 1] - q_begin;
    const int64_t k_begin = p.cu_k[it.b], sk = p.cu_k[it.b + 1] - k_begin;
    const int64_t n0 = it.tile * kBlockN;
    if (n0 >= sk) continue;  // uniform over the block
    const int64_t hk = it.head;
    const int keys = static_cast<int>(std::min<int64_t>(kBlockN, sk - n0));
    const int64_t shift = sk - sq;  // causal: query i sees keys j ≤ i + shift
    // Causal: queries before n0 − shift see none of the tile's keys.
    const int64_t first_query = p.causal ? std::max<int64_t>(0, n0 - shift) : 0;

    __syncthreads();  // the previous item's readers of the tiles are done
    load_tile<T, kBlockN, kD, kLd, kThreads>(k_s, k + ((k_begin + n0) * p.heads_kv + hk) * dim, p.heads_kv * dim, keys,
                                             dim);
    load_tile<T, kBlockN, kD, kLd, kThreads>(v_s, v + ((k_begin + n0) * p.heads_kv + hk) * dim, p.heads_kv * dim, keys,
                                             dim);

    float dk[kD / 8][4], dv[kD / 8][4];
    zero(dk);
    zero(dv);

    for (int64_t h = hk * group; h < (hk + 1) * group; ++h) {
      for (int64_t m0 = first_query / kBlockM * kBlockM; m0 < sq; m0 += kBlockM) {
        __syncthreads();  // the previous query tile is no longer read (and K/V are stored)
        const int rows = static_cast<int>(std::min<int64_t>(kBlockM, sq - m0));
        load_tile<T, kBlockM, kD, kLd, kThreads>(q_s, q + ((q_begin + m0) * p.heads_q + h) * dim, p.heads_q * dim, rows,
                                                 dim);
        load_tile<T, kBlockM, kD, kLd, kThreads>(do_s, d_out + ((q_begin + m0) * p.heads_q + h) * dim, p.heads_q * dim,
                                                 rows, dim);
        for (int r = threadIdx.x; r < kBlockM; r += kThreads) {
          const bool valid = r < rows;
          lse_s[r] = valid ? p.lse[lse_index(p, it.b, h, m0 + r)] * kLog2e : 0.f;
          delta_s[r] = valid ? p.delta[lse_index(p, it.b, h, m0 + r)] : 0.f;
        }
        __syncthreads();

        // Sᵀ and dPᵀ for the warp's 16 keys × kBlockM queries.
        float s[kBlockM / 8][4], dp[kBlockM / 8][4];
        zero(s);
        zero(dp);
        warp_mma<kBlockM, false, false>(s, k_s + warp_row * kLd, kLd, q_s, kLd, dim16);
        warp_mma<kBlockM, false, false>(dp, v_s + warp_row * kLd, kLd, do_s, kLd, dim16);
        // Causal: key_row − query_col ≤ diagonal (clamped: the difference lies in (−kBlockM, kBlockN)).
        const int diagonal = static_cast<int>(std::clamp<int64_t>(m0 + shift - n0, -kBlockM - 1, kBlockN));
#pragma unroll
        for (int j = 0; j < kBlockM / 8; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int key_row = warp_row + g + 8 * (e / 2), query_col = 8 * j + 2 * t + e % 2;
            const bool visible = key_row < keys && query_col < rows && (!p.causal || key_row - query_col <= diagonal);
            // Select, not multiply: lse is −inf for queries that see no key.
            const float pr = visible ? exp2f(s[j][e] * scale_log2 - lse_s[query_col]) : 0.f;
            const float ds = pr * (dp[j][e] - delta_s[query_col]);
            pt_s[key_row * kLdP + query_col] = from_float<T>(pr);
            dst_s[key_row * kLdP + query_col] = from_float<T>(ds);
          }
        __syncthreads();  // dQ reads every warp's dSᵀ rows

        warp_mma<kD, false, true>(dv, pt_s + warp_row * kLdP, kLdP, do_s, kLd, kBlockM);
        warp_mma<kD, false, true>(dk, dst_s + warp_row * kLdP, kLdP, q_s, kLd, kBlockM);

        // dQ rows 16·row_group.. (query × key = transposed dSᵀ) · K, a chunk of columns at a time.
        for (int row_group = warp; row_group < kBlockM / 16; row_group += kWarps) {
          for (int c0 = 0; c0 < dim; c0 += kDqChunk) {
            float dq[kDqChunk / 8][4];
            zero(dq);
            warp_mma<kDqChunk, true, true>(dq, dst_s + 16 * row_group, kLdP, k_s + c0, kLd, kBlockN);
#pragma unroll
            for (int j = 0; j < kDqChunk / 8; ++j)
#pragma unroll
              for (int e = 0; e < 4; ++e) {
                const int64_t i = m0 + 16 * row_group + g + 8 * (e / 2);
                const int col = c0 + 8 * j + 2 * t + e % 2;
                if (i < sq && col < dim)
                  atomicAdd(dq_accum + ((q_begin + i) * p.heads_q + h) * dim + col, p.scale * dq[j][e]);
              }
          }
        }
      }
    }

#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int64_t key = n0 + warp_row + g + 8 * r;
      if (key >= sk) continue;
      const int64_t offset = ((k_begin + key) * p.heads_kv + hk) * dim;
#pragma unroll
      for (int j = 0; j < kD / 8; ++j)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int col = 8 * j + 2 * t + c;
          if (col >= dim) continue;
          dk_out[offset + col] = from_float<T>(p.scale * dk[j][2 * r + c]);
          dv_out[offset + col] = from_float<T>(dv[j][2 * r + c]);
        }
    }
  }
}

template <typename T>
__global__ void store_converted_kernel(T* __restrict__ dst, const float* __restrict__ src, int64_t count) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += step)
    dst[i] = from_float<T>(src[i]);
}

// ---------------------------------------------------------------------------------
// Host side.

// Blocks for `items` work items; the kernels loop over the rest.
unsigned grid_blocks(int64_t items, int64_t cap) { return static_cast<unsigned>(std::min(items, cap)); }

template <typename Kernel>
void prepare_shared(Kernel kernel, int bytes, const char* name) {
  int device = 0, limit = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  if (err != cudaSuccess) fail(ErrorCode::Cuda, name, ": ", cudaGetErrorString(err));
  if (bytes > limit)
    fail(ErrorCode::Cuda, name, ": needs ", bytes, " bytes of shared memory per block, the device allows ", limit);
  err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (err != cudaSuccess) fail(ErrorCode::Cuda, name, ": cudaFuncSetAttribute failed: ", cudaGetErrorString(err));
}

template <typename T, int kD>
void launch_forward(const AttentionProblem& p, cudaStream_t stream) {
  using Tiles = ForwardTiles<T, kD>;
  const int64_t items = p.batch * p.heads_q * ((p.max_seqlen_q + Tiles::kBlockM - 1) / Tiles::kBlockM);
  if (items == 0) return;
  prepare_shared(attention_forward_kernel<T, kD>, Tiles::kSharedBytes, "attention_forward");
  attention_forward_kernel<T, kD><<<grid_blocks(items, 2147483647), Tiles::kThreads, Tiles::kSharedBytes, stream>>>(p);
  check_launch("attention_forward");
}

template <typename T, int kD>
void launch_backward(const AttentionProblem& p, float* dq_accum, cudaStream_t stream) {
  using Tiles = BackwardTiles<T, kD>;
  const int64_t items = p.batch * p.heads_kv * ((p.max_seqlen_k + Tiles::kBlockN - 1) / Tiles::kBlockN);
  if (items == 0) return;
  prepare_shared(attention_backward_kernel<T, kD>, Tiles::kSharedBytes, "attention_backward");
  attention_backward_kernel<T, kD>
      <<<grid_blocks(items, 2147483647), Tiles::kThreads, Tiles::kSharedBytes, stream>>>(p, dq_accum);
  check_launch("attention_backward");
}

template <typename T>
void forward_typed(const AttentionProblem& p, cudaStream_t stream) {
  if (p.head_dim <= 64)
    launch_forward<T, 64>(p, stream);
  else if (p.head_dim <= 128)
    launch_forward<T, 128>(p, stream);
  else
    launch_forward<T, 256>(p, stream);
}

template <typename T>
void backward_typed(const AttentionProblem& p, float* workspace, cudaStream_t stream) {
  const int64_t dq_count = p.rows_q * p.heads_q * p.head_dim;
  // f32 accumulates straight into dq; the 16-bit types go through the f32 workspace.
  float* dq_accum = sizeof(T) == 4 ? static_cast<float*>(p.dq) : workspace;
  if (dq_count > 0) {
    cudaError_t err = cudaMemsetAsync(dq_accum, 0, static_cast<size_t>(dq_count) * sizeof(float), stream);
    if (err != cudaSuccess)
      fail(ErrorCode::Cuda, "attention_backward: cudaMemsetAsync failed: ", cudaGetErrorString(err));
  }

  const int64_t delta_rows = p.batch * p.heads_q * p.max_seqlen_q;
  if (delta_rows > 0) {
    attention_delta_kernel<T>
        <<<grid_blocks((delta_rows + kDeltaWarps - 1) / kDeltaWarps, 1 << 20), 32 * kDeltaWarps, 0, stream>>>(p);
    check_launch("attention_delta");
  }

  if (p.head_dim <= 64)
    launch_backward<T, 64>(p, dq_accum, stream);
  else if (p.head_dim <= 128)
    launch_backward<T, 128>(p, dq_accum, stream);
  else
    launch_backward<T, 256>(p, dq_accum, stream);

  if constexpr (sizeof(T) != 4) {
    if (dq_count > 0) {
      constexpr int kThreads = 256;
      store_converted_kernel<T><<<grid_blocks((dq_count + kThreads - 1) / kThreads, 1 << 20), kThreads, 0, stream>>>(
          static_cast<T*>(p.dq), dq_accum, dq_count);
      check_launch("attention_dq_convert");
    }
  }
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

void check_problem(const AttentionProblem& p, const char* name, bool backward) {
  R1V_CHECK(p.head_dim > 0 && p.head_dim <= 256 && p.head_dim % 8 == 0, Argument, name,
            ": head dim must be a multiple of 8 in [8, 256], got ", p.head_dim);
  R1V_CHECK(p.heads_q > 0 && p.heads_kv > 0 && p.heads_q % p.heads_kv == 0, Argument, name, ": heads_q (", p.heads_q,
            ") must be a multiple of heads_kv (", p.heads_kv, ")");
  // The tile loads read 16 bytes at a time.
  R1V_CHECK(aligned16(p.q) && aligned16(p.k) && aligned16(p.v) && (!backward || aligned16(p.d_out)), Argument, name,
            ": q, k, v", backward ? ", d_out" : "", " must be 16-byte aligned");
}

}  // namespace

void attention_forward(const AttentionProblem& p, void* stream) {
  if (p.batch == 0 || p.rows_q == 0) return;
  check_problem(p, "attention_forward", false);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (p.dtype) {
    case DType::F32:
      forward_typed<float>(p, s);
      break;
    case DType::BF16:
      forward_typed<__nv_bfloat16>(p, s);
      break;
    case DType::F16:
      forward_typed<__half>(p, s);
      break;
    default:
      fail(ErrorCode::DType, "attention_forward: unsupported dtype ", dtype_name(p.dtype), " on CUDA");
  }
}

int64_t attention_backward_workspace_floats(const AttentionProblem& p) {
  // dQ accumulator for bf16/f16; f32 accumulates in dq itself.
  return p.dtype == DType::F32 ? 0 : p.rows_q * p.heads_q * p.head_dim;
}

void attention_backward(const AttentionProblem& p, float* workspace, void* stream) {
  if (p.batch == 0 || (p.rows_q == 0 && p.rows_k == 0)) return;
  check_problem(p, "attention_backward", true);
  R1V_CHECK(attention_backward_workspace_floats(p) == 0 || workspace != nullptr, Argument,
            "attention_backward: missing workspace");
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (p.dtype) {
    case DType::F32:
      backward_typed<float>(p, workspace, s);
      break;
    case DType::BF16:
      backward_typed<__nv_bfloat16>(p, workspace, s);
      break;
    case DType::F16:
      backward_typed<__half>(p, workspace, s);
      break;
    default:
      fail(ErrorCode::DType, "attention_backward: unsupported dtype ", dtype_name(p.dtype), " on CUDA");
  }
}

}  // namespace r1v::cuda

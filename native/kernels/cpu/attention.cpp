// CPU attention, flash-style: per (sequence, head, query tile) the keys are visited in
// blocks; scores of one tile × block live in a small buffer, never the whole Sq×Sk matrix.
// Every product is a "block product" C (+)= α·A·B with B row-major, computed by
// register-blocked AVX-512 / AVX2 micro-kernels (portable loops elsewhere); the row passes
// (max, exp, sums) use vec_math.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "../../core/cpu_info.h"
#include "../../core/thread_pool.h"
#include "../attention.h"
#include "vec_math.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace r1v::cpu {

namespace {

constexpr int64_t kTileQ = 64;    // query rows per tile
constexpr int64_t kBlockK = 128;  // keys per block
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

int64_t round_up16(int64_t n) { return (n + 15) / 16 * 16; }

// The operands of one block product C[m, n] (+)= alpha · Σ_k A(r, k) · B[k, c]:
// A(r, k) = a[r·a_rs + k·a_ks] (so A or Aᵀ may be stored row-major), B[k, c] = b[k·ldb + c],
// C[r, c] = c[r·ldc + c]. n is a multiple of 8 (a head dim, or a block padded to 16).
struct BlockProduct {
  int64_t m, n, k;
  const float* a;
  int64_t a_rs, a_ks;
  const float* b;
  int64_t ldb;
  float* c;
  int64_t ldc;
  float alpha;
  bool accumulate;
};

#if defined(__x86_64__)

// R rows × NV zmm columns of C in registers (24 accumulators for 6 × 4); per k step NV
// loads of B and R broadcasts of A feed R·NV FMAs. The last vector is masked (n tails).
template <int R, int NV>
__attribute__((target("avx512f"))) void tile_avx512(const BlockProduct& p, int64_t r0, int64_t c0, __mmask16 last) {
  __m512 acc[R][NV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  const float* a = p.a + r0 * p.a_rs;
  const float* b = p.b + c0;
  for (int64_t k = 0; k < p.k; ++k) {
    __m512 bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      bv[v] = v == NV - 1 ? _mm512_maskz_loadu_ps(last, b + 16 * v) : _mm512_loadu_ps(b + 16 * v);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 ar = _mm512_set1_ps(a[r * p.a_rs]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(ar, bv[v], acc[r][v]);
    }
    a += p.a_ks;
    b += p.ldb;
  }
  const __m512 alpha = _mm512_set1_ps(p.alpha);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    float* row = p.c + (r0 + r) * p.ldc + c0;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      __mmask16 mask = v == NV - 1 ? last : __mmask16(0xFFFF);
      __m512 x = _mm512_mul_ps(alpha, acc[r][v]);
      if (p.accumulate) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mask, row + 16 * v));
      _mm512_mask_storeu_ps(row + 16 * v, mask, x);
    }
  }
}

template <int R>
__attribute__((target("avx512f"))) void tile_avx512_cols(const BlockProduct& p, int64_t r0, int64_t c0, int nv,
                                                         __mmask16 last) {
  switch (nv) {
    case 1: return tile_avx512<R, 1>(p, r0, c0, last);
    case 2: return tile_avx512<R, 2>(p, r0, c0, last);
    case 3: return tile_avx512<R, 3>(p, r0, c0, last);
    default: return tile_avx512<R, 4>(p, r0, c0, last);
  }
}

__attribute__((target("avx512f"))) void block_product_avx512(const BlockProduct& p) {
  constexpr int64_t kRows = 6, kCols = 64;
  for (int64_t c0 = 0; c0 < p.n; c0 += kCols) {
    int64_t cols = std::min(kCols, p.n - c0);
    int nv = static_cast<int>((cols + 15) / 16);
    int64_t tail = cols - 16 * (nv - 1);
    __mmask16 last = tail == 16 ? __mmask16(0xFFFF) : __mmask16((1u << tail) - 1u);
    for (int64_t r0 = 0; r0 < p.m; r0 += kRows) {
      switch (std::min(kRows, p.m - r0)) {
        case 1: tile_avx512_cols<1>(p, r0, c0, nv, last); break;
        case 2: tile_avx512_cols<2>(p, r0, c0, nv, last); break;
        case 3: tile_avx512_cols<3>(p, r0, c0, nv, last); break;
        case 4: tile_avx512_cols<4>(p, r0, c0, nv, last); break;
        case 5: tile_avx512_cols<5>(p, r0, c0, nv, last); break;
        default: tile_avx512_cols<6>(p, r0, c0, nv, last); break;
      }
    }
  }
}

// R rows × NV ymm columns (12 accumulators for 4 × 3 of the 16 registers). n % 8 == 0.
template <int R, int NV>
__attribute__((target("avx2,fma"))) void tile_avx2(const BlockProduct& p, int64_t r0, int64_t c0) {
  __m256 acc[R][NV];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_setzero_ps();
  const float* a = p.a + r0 * p.a_rs;
  const float* b = p.b + c0;
  for (int64_t k = 0; k < p.k; ++k) {
    __m256 bv[NV];
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) bv[v] = _mm256_loadu_ps(b + 8 * v);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m256 ar = _mm256_broadcast_ss(a + r * p.a_rs);
#pragma GCC unroll 3
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(ar, bv[v], acc[r][v]);
    }
    a += p.a_ks;
    b += p.ldb;
  }
  const __m256 alpha = _mm256_set1_ps(p.alpha);
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    float* row = p.c + (r0 + r) * p.ldc + c0;
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) {
      __m256 x = _mm256_mul_ps(alpha, acc[r][v]);
      if (p.accumulate) x = _mm256_add_ps(x, _mm256_loadu_ps(row + 8 * v));
      _mm256_storeu_ps(row + 8 * v, x);
    }
  }
}

template <int R>
__attribute__((target("avx2,fma"))) void tile_avx2_cols(const BlockProduct& p, int64_t r0, int64_t c0, int nv) {
  switch (nv) {
    case 1: return tile_avx2<R, 1>(p, r0, c0);
    case 2: return tile_avx2<R, 2>(p, r0, c0);
    default: return tile_avx2<R, 3>(p, r0, c0);
  }
}

__attribute__((target("avx2,fma"))) void block_product_avx2(const BlockProduct& p) {
  constexpr int64_t kRows = 4, kCols = 24;
  for (int64_t c0 = 0; c0 < p.n; c0 += kCols) {
    int nv = static_cast<int>(std::min(kCols, p.n - c0) / 8);
    for (int64_t r0 = 0; r0 < p.m; r0 += kRows) {
      switch (std::min(kRows, p.m - r0)) {
        case 1: tile_avx2_cols<1>(p, r0, c0, nv); break;
        case 2: tile_avx2_cols<2>(p, r0, c0, nv); break;
        case 3: tile_avx2_cols<3>(p, r0, c0, nv); break;
        default: tile_avx2_cols<4>(p, r0, c0, nv); break;
      }
    }
  }
}

#endif  // __x86_64__

void block_product_generic(const BlockProduct& p) {
  float row[256];  // n ≤ max(head dim, padded key block) ≤ 256
  for (int64_t r = 0; r < p.m; ++r) {
    std::fill(row, row + p.n, 0.f);
    for (int64_t k = 0; k < p.k; ++k) {
      float a = p.a[r * p.a_rs + k * p.a_ks];
      const float* b = p.b + k * p.ldb;
      for (int64_t c = 0; c < p.n; ++c) row[c] += a * b[c];
    }
    float* out = p.c + r * p.ldc;
    for (int64_t c = 0; c < p.n; ++c) out[c] = p.alpha * row[c] + (p.accumulate ? out[c] : 0.f);
  }
}

enum class Isa { Avx512, Avx2, Generic };

Isa isa() {
  static const Isa value = [] {
    const std::string& name = cpu_info().isa;
    return name == "avx512" ? Isa::Avx512 : name == "avx2" ? Isa::Avx2 : Isa::Generic;
  }();
  return value;
}

void block_product(const BlockProduct& p) {
  if (p.m == 0 || p.n == 0) return;
#if defined(__x86_64__)
  if (isa() == Isa::Avx512) return block_product_avx512(p);
  if (isa() == Isa::Avx2) return block_product_avx2(p);
#endif
  block_product_generic(p);
}

// n rows of head_dim floats, `ld` apart, transposed into dst[d·ld_dst + j] (ld_dst = n
// rounded up to 16; the padding columns are zero). In 16 × 16 blocks, so that neither the
// reads nor the writes stride through more cache lines than the cache holds.
void pack_transposed(const float* src, int64_t ld, int64_t n, int64_t head_dim, float* dst, int64_t ld_dst) {
  for (int64_t d = 0; d < head_dim; ++d) std::fill(dst + d * ld_dst + n, dst + (d + 1) * ld_dst, 0.f);
  for (int64_t j0 = 0; j0 < n; j0 += 16) {
    const int64_t j1 = std::min(n, j0 + 16);
    for (int64_t d0 = 0; d0 < head_dim; d0 += 16) {
      const int64_t d1 = std::min(head_dim, d0 + 16);
      for (int64_t j = j0; j < j1; ++j)
        for (int64_t d = d0; d < d1; ++d) dst[d * ld_dst + j] = src[j * ld + d];
    }
  }
}

// n rows of head_dim floats, `ld` apart, copied contiguously: the products then stream
// their B operand instead of striding through memory Hq·D or Hkv·D floats per row (a
// power of two apart, so the rows would compete for the same cache sets).
void pack_rows(const float* src, int64_t ld, int64_t n, int64_t head_dim, float* dst) {
  for (int64_t j = 0; j < n; ++j) std::memcpy(dst + j * head_dim, src + j * ld, head_dim * sizeof(float));
}

// The problem's sequences: sequence b's rows, and how many keys query i of it may see.
struct Sequences {
  const AttentionProblem& p;
  int64_t q_begin(int64_t b) const { return p.cu_q[b]; }
  int64_t k_begin(int64_t b) const { return p.cu_k[b]; }
  int64_t len_q(int64_t b) const { return p.cu_q[b + 1] - p.cu_q[b]; }
  int64_t len_k(int64_t b) const { return p.used_k ? p.used_k[b] : p.cu_k[b + 1] - p.cu_k[b]; }
  // Number of keys (a prefix of the sequence's keys) visible to query i.
  int64_t visible(int64_t b, int64_t i) const {
    int64_t sk = len_k(b);
    return p.causal ? std::clamp<int64_t>(i + sk - len_q(b) + 1, 0, sk) : sk;
  }
  float* lse_row(float* base, int64_t b, int64_t h) const {
    return base + b * p.lse_stride_b + h * p.lse_stride_h + (p.lse_packed ? p.cu_q[b] : 0);
  }
};

// Hands out items [0, n) one at a time, in order, to the pool's threads (callers order
// them by falling cost, so the expensive ones start first). Each thread makes its scratch
// once with make_scratch() and calls fn(item, scratch).
template <typename MakeScratch, typename Fn>
void for_each_item(int64_t n, const MakeScratch& make_scratch, const Fn& fn) {
  std::atomic<int64_t> next{0};
  ThreadPool::global().run([&](int, int) {
    auto scratch = make_scratch();
    for (int64_t item; (item = next.fetch_add(1)) < n;) fn(item, scratch);
  });
}

struct ForwardScratch {
  std::vector<float> kb, kt, vb, s, acc, row_max, row_sum;  // K, Kᵀ, V blocks, scores, output rows, softmax state
};

struct ForwardItem {
  int64_t b, h, i0, cost;
};

struct BackwardScratch {
  std::vector<float> kt, vt, kb;  // Kᵀ, Vᵀ and K of the key block
  std::vector<float> dkb, dvb;     // its dk, dv accumulators
  std::vector<float> qb, dob;      // Q and dO of the query tile
  std::vector<float> s, ds;        // probabilities, score gradients
};

// Backward, in tiles of (query tile × key block). Every key block's dk/dv rows are summed
// by one item, over the query heads of its GQA group. With enough (sequence, kv head) pairs
// for the threads, an item takes all key blocks of one and also owns the dq rows of its
// query heads (one fused pass). Otherwise the key blocks are split over several items and
// dq is a second pass over (sequence, head, query tile), recomputing P and dS.
class Backward {
 public:
  explicit Backward(const AttentionProblem& p)
      : p_(p), seq_{p}, D_(p.head_dim), group_(p.heads_q / p.heads_kv), ld_q_(p.heads_q * p.head_dim),
        ld_k_(p.heads_kv * p.head_dim) {}

  BackwardScratch make_scratch() const {
    const auto block = static_cast<size_t>(kBlockK * D_), tile = static_cast<size_t>(kTileQ * D_);
    return BackwardScratch{std::vector<float>(block), std::vector<float>(block), std::vector<float>(block),
                           std::vector<float>(block), std::vector<float>(block),
                           std::vector<float>(tile),  std::vector<float>(tile),
                           std::vector<float>(kTileQ * kBlockK), std::vector<float>(kTileQ * kBlockK)};
  }

  // δ = rowsum(dO ∘ O), one per (query row, head), laid out like lse.
  void compute_delta() const {
    ThreadPool::global().parallel_for(p_.batch * p_.heads_q, 1, [&](int64_t begin, int64_t end) {
      for (int64_t bh = begin; bh < end; ++bh) {
        const int64_t b = bh / p_.heads_q, h = bh % p_.heads_q;
        float* delta = seq_.lse_row(p_.delta, b, h);
        for (int64_t i = 0; i < seq_.len_q(b); ++i) {
          const int64_t at = ((seq_.q_begin(b) + i) * p_.heads_q + h) * D_;
          delta[i] = dot(f(p_.d_out) + at, f(p_.out) + at, D_);
        }
      }
    });
  }

  // dk, dv of key blocks [block_begin, block_end) of (b, kv head hk); with_dq: also the
  // whole dq of the group's query heads (the item must then cover all of the sequence's blocks).
  void key_blocks(int64_t b, int64_t hk, int64_t block_begin, int64_t block_end, bool with_dq,
                  BackwardScratch& t) const {
    const int64_t sq = seq_.len_q(b), sk = seq_.len_k(b);
    if (with_dq) {
      for (int64_t i = 0; i < sq; ++i) {
        float* row = f(p_.dq) + ((seq_.q_begin(b) + i) * p_.heads_q + hk * group_) * D_;
        std::fill(row, row + group_ * D_, 0.f);
      }
    }
    for (int64_t j0 = block_begin * kBlockK; j0 < std::min(sk, block_end * kBlockK); j0 += kBlockK) {
      const int64_t nk = std::min(kBlockK, sk - j0);
      const int64_t key_at = pack_key_block(b, hk, j0, nk, t);
      std::fill(t.dkb.begin(), t.dkb.begin() + nk * D_, 0.f);
      std::fill(t.dvb.begin(), t.dvb.begin() + nk * D_, 0.f);
      // The first query that sees key j0 (causal: i + sk − sq ≥ j0).
      const int64_t first = p_.causal ? std::max<int64_t>(0, j0 - (sk - sq)) : 0;
      for (int64_t h = hk * group_; h < (hk + 1) * group_; ++h) {
        for (int64_t i0 = first; i0 < sq; i0 += kTileQ) {
          const int64_t rows = std::min(kTileQ, sq - i0);
          const int64_t query_at = pack_query_tile(b, h, i0, rows, t);
          score_gradients(b, h, i0, rows, j0, nk, t);
          const int64_t ld_s = round_up16(nk);
          // dV += Pᵀ·dO, dK += scale·dSᵀ·Q (and dQ += scale·dS·K).
          block_product({nk, D_, rows, t.s.data(), 1, ld_s, t.dob.data(), D_, t.dvb.data(), D_, 1.f, true});
          block_product({nk, D_, rows, t.ds.data(), 1, ld_s, t.qb.data(), D_, t.dkb.data(), D_, p_.scale, true});
          if (with_dq)
            block_product({rows, D_, nk, t.ds.data(), ld_s, 1, t.kb.data(), D_, f(p_.dq) + query_at, ld_q_, p_.scale,
                           true});
        }
      }
      for (int64_t j = 0; j < nk; ++j) {
        std::memcpy(f(p_.dk) + key_at + j * ld_k_, t.dkb.data() + j * D_, D_ * sizeof(float));
        std::memcpy(f(p_.dv) + key_at + j * ld_k_, t.dvb.data() + j * D_, D_ * sizeof(float));
      }
    }
  }

  // dq of query rows [i0, i0 + rows) of (b, head h), over the keys they see.
  void query_tile(int64_t b, int64_t h, int64_t i0, int64_t rows, BackwardScratch& t) const {
    const int64_t query_at = pack_query_tile(b, h, i0, rows, t);
    float* dq = f(p_.dq) + query_at;
    for (int64_t r = 0; r < rows; ++r) std::fill(dq + r * ld_q_, dq + r * ld_q_ + D_, 0.f);
    const int64_t keys = seq_.visible(b, i0 + rows - 1);
    for (int64_t j0 = 0; j0 < keys; j0 += kBlockK) {
      const int64_t nk = std::min(kBlockK, keys - j0);
      pack_key_block(b, h / group_, j0, nk, t);
      score_gradients(b, h, i0, rows, j0, nk, t);
      block_product({rows, D_, nk, t.ds.data(), round_up16(nk), 1, t.kb.data(), D_, dq, ld_q_, p_.scale, true});
    }
  }

 private:
  static float* f(void* x) { return static_cast<float*>(x); }
  static const float* f(const void* x) { return static_cast<const float*>(x); }

  // K (rows), Kᵀ and Vᵀ of keys [j0, j0 + nk) into t; returns the block's element offset.
  int64_t pack_key_block(int64_t b, int64_t hk, int64_t j0, int64_t nk, BackwardScratch& t) const {
    const int64_t key_at = ((seq_.k_begin(b) + j0) * p_.heads_kv + hk) * D_;
    pack_rows(f(p_.k) + key_at, ld_k_, nk, D_, t.kb.data());
    pack_transposed(t.kb.data(), D_, nk, D_, t.kt.data(), round_up16(nk));
    pack_transposed(f(p_.v) + key_at, ld_k_, nk, D_, t.vt.data(), round_up16(nk));
    return key_at;
  }

  // Q and dO of query rows [i0, i0 + rows) into t; returns the tile's element offset.
  int64_t pack_query_tile(int64_t b, int64_t h, int64_t i0, int64_t rows, BackwardScratch& t) const {
    const int64_t query_at = ((seq_.q_begin(b) + i0) * p_.heads_q + h) * D_;
    pack_rows(f(p_.q) + query_at, ld_q_, rows, D_, t.qb.data());
    pack_rows(f(p_.d_out) + query_at, ld_q_, rows, D_, t.dob.data());
    return query_at;
  }

  // t.s = P = exp(scale·Q·Kᵀ − lse), zero where masked; t.ds = dS = P ∘ (dO·Vᵀ − δ).
  void score_gradients(int64_t b, int64_t h, int64_t i0, int64_t rows, int64_t j0, int64_t nk,
                       BackwardScratch& t) const {
    const int64_t ld_s = round_up16(nk);
    float* s = t.s.data();
    float* ds = t.ds.data();
    block_product({rows, ld_s, D_, t.qb.data(), D_, 1, t.kt.data(), ld_s, s, ld_s, p_.scale, false});
    block_product({rows, ld_s, D_, t.dob.data(), D_, 1, t.vt.data(), ld_s, ds, ld_s, 1.f, false});
    const float* lse = seq_.lse_row(p_.lse, b, h) + i0;
    const float* delta = seq_.lse_row(p_.delta, b, h) + i0;
    for (int64_t r = 0; r < rows; ++r) {
      float* sr = s + r * ld_s;
      float* dsr = ds + r * ld_s;
      const int64_t valid = std::clamp<int64_t>(seq_.visible(b, i0 + r) - j0, 0, nk);
      if (valid > 0) exp_shifted_sum(sr, sr, valid, 1.f, lse[r]);
      std::fill(sr + valid, sr + ld_s, 0.f);
      for (int64_t j = 0; j < ld_s; ++j) dsr[j] = sr[j] * (dsr[j] - delta[r]);
    }
  }

  const AttentionProblem& p_;
  const Sequences seq_;
  const int64_t D_, group_, ld_q_, ld_k_;
};

struct KeyItem {
  int64_t b, hk, block_begin, block_end, cost;
};

struct QueryItem {
  int64_t b, h, i0, cost;
};

template <typename Item>
void sort_by_falling_cost(std::vector<Item>& items) {
  std::stable_sort(items.begin(), items.end(), [](const Item& x, const Item& y) { return x.cost > y.cost; });
}

}  // namespace

void attention_forward(const AttentionProblem& p) {
  const Sequences seq{p};
  const int64_t D = p.head_dim, group = p.heads_q / p.heads_kv;
  const int64_t ld_q = p.heads_q * D, ld_k = p.heads_kv * D;
  const auto* q = static_cast<const float*>(p.q);
  const auto* k = static_cast<const float*>(p.k);
  const auto* v = static_cast<const float*>(p.v);
  auto* out = static_cast<float*>(p.out);

  std::vector<ForwardItem> items;
  for (int64_t b = 0; b < p.batch; ++b) {
    for (int64_t i0 = 0; i0 < seq.len_q(b); i0 += kTileQ) {
      int64_t rows = std::min(kTileQ, seq.len_q(b) - i0);
      int64_t cost = rows * (seq.visible(b, i0 + rows - 1) + 1);
      for (int64_t h = 0; h < p.heads_q; ++h) items.push_back({b, h, i0, cost});
    }
  }
  sort_by_falling_cost(items);

  auto make_scratch = [&] {
    return ForwardScratch{std::vector<float>(kBlockK * D), std::vector<float>(D * kBlockK), std::vector<float>(kBlockK * D),
                          std::vector<float>(kTileQ * kBlockK), std::vector<float>(kTileQ * D),
                          std::vector<float>(kTileQ), std::vector<float>(kTileQ)};
  };
  for_each_item(static_cast<int64_t>(items.size()), make_scratch, [&](int64_t index, ForwardScratch& t) {
    const ForwardItem& it = items[index];
    const int64_t rows = std::min(kTileQ, seq.len_q(it.b) - it.i0);
    const int64_t hk = it.h / group;
    float* acc = t.acc.data();
    float* row_max = t.row_max.data();
    float* row_sum = t.row_sum.data();
    std::fill(acc, acc + rows * D, 0.f);
    std::fill(row_max, row_max + rows, kNegInf);
    std::fill(row_sum, row_sum + rows, 0.f);

    const float* q_tile = q + ((seq.q_begin(it.b) + it.i0) * p.heads_q + it.h) * D;
    const int64_t keys = seq.visible(it.b, it.i0 + rows - 1);  // the tile's last row sees the most
    for (int64_t j0 = 0; j0 < keys; j0 += kBlockK) {
      const int64_t nk = std::min(kBlockK, keys - j0), ld_s = round_up16(nk);
      const int64_t key_row = seq.k_begin(it.b) + j0;
      pack_rows(k + (key_row * p.heads_kv + hk) * D, ld_k, nk, D, t.kb.data());
      pack_rows(v + (key_row * p.heads_kv + hk) * D, ld_k, nk, D, t.vb.data());
      pack_transposed(t.kb.data(), D, nk, D, t.kt.data(), ld_s);
      block_product({rows, ld_s, D, q_tile, ld_q, 1, t.kt.data(), ld_s, t.s.data(), ld_s, p.scale, false});
      // Online softmax: P = exp(S − running max); what was accumulated is rescaled to the new max.
      for (int64_t r = 0; r < rows; ++r) {
        float* sr = t.s.data() + r * ld_s;
        const int64_t valid = std::clamp<int64_t>(seq.visible(it.b, it.i0 + r) - j0, 0, nk);
        std::fill(sr + valid, sr + nk, 0.f);
        if (valid == 0) continue;
        const float m_new = std::max(row_max[r], cpu::row_max(sr, valid));
        const float correction = row_max[r] == kNegInf ? 0.f : std::exp(row_max[r] - m_new);
        row_sum[r] = row_sum[r] * correction + exp_shifted_sum(sr, sr, valid, 1.f, m_new);
        row_max[r] = m_new;
        if (correction != 1.f) {
          for (float *o = acc + r * D, *end = o + D; o < end; ++o) *o *= correction;
        }
      }
      block_product({rows, D, nk, t.s.data(), ld_s, 1, t.vb.data(), D, acc, D, 1.f, true});
    }

    float* lse = seq.lse_row(p.lse, it.b, it.h) + it.i0;
    for (int64_t r = 0; r < rows; ++r) {
      float* o = out + ((seq.q_begin(it.b) + it.i0 + r) * p.heads_q + it.h) * D;
      if (row_sum[r] == 0.f) {  // no visible key
        std::fill(o, o + D, 0.f);
        lse[r] = kNegInf;
        continue;
      }
      const float inv = 1.f / row_sum[r];
      for (int64_t d = 0; d < D; ++d) o[d] = acc[r * D + d] * inv;
      lse[r] = row_max[r] + std::log(row_sum[r]);
    }
  });
}

void attention_backward(const AttentionProblem& p) {
  const Sequences seq{p};
  const Backward backward(p);
  backward.compute_delta();

  // Key blocks per item: 1 chunk (the fused pass) when the (sequence, kv head) pairs give
  // every thread two items, else enough chunks to.
  const int64_t pairs = p.batch * p.heads_kv, threads = ThreadPool::global().num_threads();
  const int64_t max_blocks = (p.max_seqlen_k + kBlockK - 1) / kBlockK;
  const int64_t chunks = std::clamp<int64_t>((2 * threads + pairs - 1) / std::max<int64_t>(pairs, 1), 1,
                                             std::max<int64_t>(max_blocks, 1));
  const bool fused = chunks == 1;
  auto make_scratch = [&] { return backward.make_scratch(); };

  std::vector<KeyItem> key_items;
  for (int64_t b = 0; b < p.batch; ++b) {
    const int64_t blocks = (seq.len_k(b) + kBlockK - 1) / kBlockK, n = std::min(chunks, std::max<int64_t>(blocks, 1));
    for (int64_t hk = 0; hk < p.heads_kv; ++hk) {
      for (int64_t c = 0; c < n; ++c) {
        const int64_t begin = blocks * c / n, end = blocks * (c + 1) / n;
        key_items.push_back({b, hk, begin, end, (end - begin + 1) * (seq.len_q(b) + 1)});
      }
    }
  }
  sort_by_falling_cost(key_items);
  for_each_item(static_cast<int64_t>(key_items.size()), make_scratch, [&](int64_t index, BackwardScratch& t) {
    const KeyItem& it = key_items[index];
    backward.key_blocks(it.b, it.hk, it.block_begin, it.block_end, fused, t);
  });
  if (fused) return;

  std::vector<QueryItem> query_items;
  for (int64_t b = 0; b < p.batch; ++b) {
    for (int64_t i0 = 0; i0 < seq.len_q(b); i0 += kTileQ) {
      const int64_t rows = std::min(kTileQ, seq.len_q(b) - i0);
      for (int64_t h = 0; h < p.heads_q; ++h) query_items.push_back({b, h, i0, rows * (seq.visible(b, i0 + rows - 1) + 1)});
    }
  }
  sort_by_falling_cost(query_items);
  for_each_item(static_cast<int64_t>(query_items.size()), make_scratch, [&](int64_t index, BackwardScratch& t) {
    const QueryItem& it = query_items[index];
    backward.query_tile(it.b, it.h, it.i0, std::min(kTileQ, seq.len_q(it.b) - it.i0), t);
  });
}

}  // namespace r1v::cpu

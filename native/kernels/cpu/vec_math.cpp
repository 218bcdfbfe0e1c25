#include "vec_math.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "../../core/cpu_info.h"

#if defined(__x86_64__)
#include <immintrin.h>
// GCC 12's AVX-512 reduce/mask intrinsics start from _mm512_undefined_ps(), which it then
// reports as "used uninitialized"; the lanes involved are always overwritten.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace r1v::cpu {

namespace {

// exp(x) = 2^n · e^r, n = round(x / ln 2), r = x − n·ln 2 (ln 2 split in two for accuracy),
// e^r by its Taylor polynomial to degree 6 (|r| ≤ ln2 / 2: truncation error < 2^-24).
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f;
constexpr float kLn2Lo = -2.12194440e-4f;
constexpr float kExpMax = 88.3762626647949f;   // above: +inf
constexpr float kExpMin = -87.3365447505531f;  // below: 0 (no subnormal results)
constexpr float kC2 = 1.f / 2, kC3 = 1.f / 6, kC4 = 1.f / 24, kC5 = 1.f / 120, kC6 = 1.f / 720;

enum class Isa { Avx512, Avx2, Generic };

Isa isa() {
  static const Isa value = [] {
    const std::string& name = cpu_info().isa;
    return name == "avx512" ? Isa::Avx512 : name == "avx2" ? Isa::Avx2 : Isa::Generic;
  }();
  return value;
}

}  // namespace

float exp_approx(float x) {
  if (std::isnan(x)) return x;
  if (x > kExpMax) return std::numeric_limits<float>::infinity();
  if (x < kExpMin) return 0.f;
  float n = std::nearbyint(x * kLog2e);
  float r = std::fma(-n, kLn2Hi, x);
  r = std::fma(-n, kLn2Lo, r);
  float p = std::fma(kC6, r, kC5);
  p = std::fma(p, r, kC4);
  p = std::fma(p, r, kC3);
  p = std::fma(p, r, kC2);
  p = std::fma(p, r, 1.f);
  p = std::fma(p, r, 1.f);
  int32_t bits;
  std::memcpy(&bits, &p, 4);
  bits += static_cast<int32_t>(n) << 23;
  std::memcpy(&p, &bits, 4);
  return p;
}

#if defined(__x86_64__)
namespace {

__attribute__((target("avx2,fma"))) inline __m256 exp_avx2(__m256 x) {
  __m256 nan_mask = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
  __m256 over = _mm256_cmp_ps(x, _mm256_set1_ps(kExpMax), _CMP_GT_OQ);
  __m256 under = _mm256_cmp_ps(x, _mm256_set1_ps(kExpMin), _CMP_LT_OQ);
  __m256 xc = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(kExpMin)), _mm256_set1_ps(kExpMax));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), xc);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
  __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(kC6), r, _mm256_set1_ps(kC5));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
  __m256i e = _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23);
  p = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), e));
  p = _mm256_blendv_ps(p, _mm256_setzero_ps(), under);
  p = _mm256_blendv_ps(p, _mm256_set1_ps(std::numeric_limits<float>::infinity()), over);
  return _mm256_blendv_ps(p, x, nan_mask);
}

__attribute__((target("avx512f"))) inline __m512 exp_avx512(__m512 x) {
  __mmask16 nan_mask = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  __mmask16 over = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kExpMax), _CMP_GT_OQ);
  __mmask16 under = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kExpMin), _CMP_LT_OQ);
  __m512 xc = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(kExpMin)), _mm512_set1_ps(kExpMax));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), xc);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
  __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(kC6), r, _mm512_set1_ps(kC5));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  __m512i e = _mm512_slli_epi32(_mm512_cvtps_epi32(n), 23);
  p = _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(p), e));
  p = _mm512_mask_mov_ps(p, under, _mm512_setzero_ps());
  p = _mm512_mask_mov_ps(p, over, _mm512_set1_ps(std::numeric_limits<float>::infinity()));
  return _mm512_mask_mov_ps(p, nan_mask, x);
}

__attribute__((target("avx2,fma"))) float hsum_avx2(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma"))) float row_max_avx2(const float* x, int64_t n) {
  __m256 m = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256 has_nan = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    has_nan = _mm256_or_ps(has_nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    m = _mm256_max_ps(m, v);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, m);
  float out = lanes[0];
  for (int j = 1; j < 8; ++j) out = std::fmax(out, lanes[j]);
  if (_mm256_movemask_ps(has_nan)) return std::numeric_limits<float>::quiet_NaN();
  for (; i < n; ++i) {
    if (std::isnan(x[i])) return x[i];
    out = std::fmax(out, x[i]);
  }
  return out;
}

__attribute__((target("avx512f"))) float row_max_avx512(const float* x, int64_t n) {
  __m512 m = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __mmask16 has_nan = 0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_loadu_ps(x + i);
    has_nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    m = _mm512_max_ps(m, v);
  }
  if (has_nan) return std::numeric_limits<float>::quiet_NaN();
  float out = _mm512_reduce_max_ps(m);
  for (; i < n; ++i) {
    if (std::isnan(x[i])) return x[i];
    out = std::fmax(out, x[i]);
  }
  return out;
}

__attribute__((target("avx2,fma"))) float exp_shifted_sum_avx2(const float* x, float* y, int64_t n, float scale,
                                                               float shift) {
  __m256 vs = _mm256_set1_ps(scale), vshift = _mm256_set1_ps(shift), acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 e = exp_avx2(_mm256_fmsub_ps(_mm256_loadu_ps(x + i), vs, vshift));
    _mm256_storeu_ps(y + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  double sum = hsum_avx2(acc);
  for (; i < n; ++i) {
    y[i] = exp_approx(std::fma(x[i], scale, -shift));
    sum += y[i];
  }
  return static_cast<float>(sum);
}

__attribute__((target("avx512f"))) float exp_shifted_sum_avx512(const float* x, float* y, int64_t n, float scale,
                                                                float shift) {
  __m512 vs = _mm512_set1_ps(scale), vshift = _mm512_set1_ps(shift), acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 e = exp_avx512(_mm512_fmsub_ps(_mm512_loadu_ps(x + i), vs, vshift));
    _mm512_storeu_ps(y + i, e);
    acc = _mm512_add_ps(acc, e);
  }
  if (i < n) {
    __mmask16 tail = static_cast<__mmask16>((1u << (n - i)) - 1);
    __m512 e = exp_avx512(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(tail, x + i), vs, vshift));
    _mm512_mask_storeu_ps(y + i, tail, e);
    acc = _mm512_add_ps(acc, _mm512_maskz_mov_ps(tail, e));
  }
  return _mm512_reduce_add_ps(acc);
}

__attribute__((target("avx2,fma"))) float dot_avx2(const float* a, const float* b, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  float sum = hsum_avx2(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) sum = std::fma(a[i], b[i], sum);
  return sum;
}

__attribute__((target("avx512f"))) float dot_avx512(const float* a, const float* b, int64_t n) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
  }
  for (; i + 16 <= n; i += 16) acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
  if (i < n) {
    __mmask16 tail = static_cast<__mmask16>((1u << (n - i)) - 1);
    acc1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, a + i), _mm512_maskz_loadu_ps(tail, b + i), acc1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

__attribute__((target("avx2,fma"))) void scale_add_avx2(float* y, float beta, const float* x, float alpha, int64_t n) {
  __m256 vb = _mm256_set1_ps(beta), va = _mm256_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(_mm256_loadu_ps(x + i), va, _mm256_mul_ps(_mm256_loadu_ps(y + i), vb)));
  for (; i < n; ++i) y[i] = std::fma(x[i], alpha, y[i] * beta);
}

__attribute__((target("avx512f"))) void scale_add_avx512(float* y, float beta, const float* x, float alpha,
                                                         int64_t n) {
  __m512 vb = _mm512_set1_ps(beta), va = _mm512_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(_mm512_loadu_ps(x + i), va, _mm512_mul_ps(_mm512_loadu_ps(y + i), vb)));
  for (; i < n; ++i) y[i] = std::fma(x[i], alpha, y[i] * beta);
}

}  // namespace
#endif

float row_max(const float* x, int64_t n) {
#if defined(__x86_64__)
  if (isa() == Isa::Avx512) return row_max_avx512(x, n);
  if (isa() == Isa::Avx2) return row_max_avx2(x, n);
#endif
  float out = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(x[i])) return x[i];
    out = std::fmax(out, x[i]);
  }
  return out;
}

float exp_shifted_sum(const float* x, float* y, int64_t n, float scale, float shift) {
#if defined(__x86_64__)
  if (isa() == Isa::Avx512) return exp_shifted_sum_avx512(x, y, n, scale, shift);
  if (isa() == Isa::Avx2) return exp_shifted_sum_avx2(x, y, n, scale, shift);
#endif
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    y[i] = exp_approx(std::fma(x[i], scale, -shift));
    sum += y[i];
  }
  return static_cast<float>(sum);
}

float dot(const float* a, const float* b, int64_t n) {
#if defined(__x86_64__)
  if (isa() == Isa::Avx512) return dot_avx512(a, b, n);
  if (isa() == Isa::Avx2) return dot_avx2(a, b, n);
#endif
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) sum = std::fma(a[i], b[i], sum);
  return sum;
}

void scale_add(float* y, float beta, const float* x, float alpha, int64_t n) {
  if (beta == 0.f) {  // overwrite: y may hold NaN (poisoned or uninitialised memory)
    for (int64_t i = 0; i < n; ++i) y[i] = alpha * x[i];
    return;
  }
#if defined(__x86_64__)
  if (isa() == Isa::Avx512) return scale_add_avx512(y, beta, x, alpha, n);
  if (isa() == Isa::Avx2) return scale_add_avx2(y, beta, x, alpha, n);
#endif
  for (int64_t i = 0; i < n; ++i) y[i] = std::fma(x[i], alpha, y[i] * beta);
}

}  // namespace r1v::cpu

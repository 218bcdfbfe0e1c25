// The connector kernels (op: ops/connector.h, InternVL's mlp1): everything but its two Linears,
// which run through run_gemm. The pixel shuffle is folded into the addressing of the LayerNorm
// kernels, so the shuffled input is never materialised. CPU: f32; CUDA: f32/bf16/f16 with f32
// math; same contracts on both.
#pragma once
#include <cstdint>

#include "../core/dtype.h"

namespace r1v {

// The shuffle as the kernels see it: row t of the shuffled input is (b, i, j) with
// t = (b·(h/2) + i)·(w/2) + j; its element k·C + c is read from (or, in backward, written to)
// x + ((b·h + 2i + ⌊k/2⌋)·w + 2j + k mod 2)·C + c.
struct ConnectorShape {
  DType dtype = DType::F32;  // of x, the parameters and every [T, ·] buffer; statistics are f32
  int64_t batch = 0, h = 0, w = 0, channels = 0;
  float eps = 1e-5f;
  int64_t rows() const { return batch * (h / 2) * (w / 2); }
  int64_t features() const { return 4 * channels; }
};

// Column reductions (bias and LayerNorm parameter gradients) are deterministic: each block of
// kRowsPerPartial rows writes its partial column sums to the workspace, then the partials are
// added in block order. Workspace size in floats for `sums` column sums over rows × cols.
constexpr int64_t kConnectorRowsPerPartial = 64;
inline int64_t connector_partials_floats(int64_t rows, int64_t cols, int64_t sums) {
  return sums * ((rows + kConnectorRowsPerPartial - 1) / kConnectorRowsPerPartial) * cols;
}

// The kernels:
//  shuffle_layernorm: normed[t] = (s[t] − mean[t])·rstd[t]·ln_weight + ln_bias, normed [T, 4C];
//    mean, rstd f32 [T] (rstd = 1/sqrt(var + eps), biased variance) kept for backward.
//  gelu_backward: dz = da·GELU'(z) with GELU'(z) = Φ(z) + z·φ(z), written over da [rows, cols];
//    d_bias[j] = Σ_t dz[t, j]. workspace: connector_partials_floats(rows, cols, 1).
//  column_sum: dst[j] = Σ_t src[t, j]. workspace: connector_partials_floats(rows, cols, 1).
//  layernorm_backward: from d_normed [T, 4C]: dx (scattered back through the shuffle; each
//    element of x is written exactly once), d_ln_weight = Σ_t d_normed·x̂, d_ln_bias = Σ_t d_normed.
//    workspace: connector_partials_floats(T, 4C, 2).
namespace cpu {
void connector_shuffle_layernorm(const ConnectorShape& s, const void* x, const void* ln_weight, const void* ln_bias,
                                 void* normed, float* mean, float* rstd);
void connector_gelu_backward(int64_t rows, int64_t cols, const void* z, void* da, void* d_bias, float* workspace);
void connector_column_sum(int64_t rows, int64_t cols, const void* src, void* dst, float* workspace);
void connector_layernorm_backward(const ConnectorShape& s, const void* x, const void* ln_weight, const float* mean,
                                  const float* rstd, const void* d_normed, void* dx, void* d_ln_weight,
                                  void* d_ln_bias, float* workspace);
}  // namespace cpu

namespace cuda {
void connector_shuffle_layernorm(const ConnectorShape& s, const void* x, const void* ln_weight, const void* ln_bias,
                                 void* normed, float* mean, float* rstd, void* stream);
void connector_gelu_backward(DType dtype, int64_t rows, int64_t cols, const void* z, void* da, void* d_bias,
                             float* workspace, void* stream);
void connector_column_sum(DType dtype, int64_t rows, int64_t cols, const void* src, void* dst, float* workspace,
                          void* stream);
void connector_layernorm_backward(const ConnectorShape& s, const void* x, const void* ln_weight, const float* mean,
                                  const float* rstd, const void* d_normed, void* dx, void* d_ln_weight,
                                  void* d_ln_bias, float* workspace, void* stream);
}  // namespace cuda

}  // namespace r1v

// CUDA GEMM: C_i = op(A_i) · op(B_i) for each batch index i, row-major, f32 accumulation.
// f32: a shared-memory tiled SIMT kernel. bf16/f16: WMMA tensor cores (16×16×16).
// Both stage tiles through shared memory with bounds-checked, zero-padded scalar loads,
// so any sizes, leading dimensions and element-aligned pointers work. Each block loops
// over its share of (batch, row tile, column tile), which keeps the grid within the
// hardware limits for any problem size.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <algorithm>
#include <cstdint>

#include "../../core/dtype.h"
#include "../../core/error.h"
#include "../../ops/matmul.h"

namespace r1v::cuda {

namespace {

// The problem as the kernels see it, with typed pointers.
template <typename T>
struct GemmArgs {
  int64_t batch, m, n, k;
  const T* a;
  int64_t lda, stride_a;
  const T* b;
  int64_t ldb, stride_b;
  T* c;
  int64_t ldc, stride_c;
};

// Output and zero padding of the 16-bit types (round to nearest even).
__device__ __forceinline__ void store_value(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }
__device__ __forceinline__ void store_value(__half* p, float v) { *p = __float2half_rn(v); }

__device__ __forceinline__ void zero_value(__nv_bfloat16* p) { *p = __ushort_as_bfloat16(0); }
__device__ __forceinline__ void zero_value(__half* p) { *p = __ushort_as_half(0); }

// Element (row, col) of op(A) [M,K]: A is stored [M,K], or [K,M] when transposed.
template <bool kTrans, typename T>
__device__ __forceinline__ const T* element_of_a(const T* a, int64_t lda, int64_t row, int64_t col) {
  return kTrans ? a + col * lda + row : a + row * lda + col;
}

// Element (row, col) of op(B) [K,N]: B is stored [K,N], or [N,K] when transposed.
template <bool kTrans, typename T>
__device__ __forceinline__ const T* element_of_b(const T* b, int64_t ldb, int64_t row, int64_t col) {
  return kTrans ? b + col * ldb + row : b + row * ldb + col;
}

// ---------------------------------------------------------------------------------
// f32: 64×64 block tile, 16-deep k slices, 256 threads as 16×16, 4×4 outputs each.
// A thread's outputs are strided by 16 rows/columns so that shared reads broadcast or
// hit consecutive banks and global stores are coalesced.
constexpr int kF32Tile = 64;
constexpr int kF32Depth = 16;
constexpr int kF32Threads = 256;

template <bool kTransA, bool kTransB>
__global__ void __launch_bounds__(kF32Threads) gemm_f32_kernel(GemmArgs<float> p, int64_t tiles_m, int64_t tiles_n) {
  // Stored k-major so the inner product reads a row of each; +1 avoids bank conflicts
  // on the transposing stores.
  __shared__ float a_tile[kF32Depth][kF32Tile + 1];
  __shared__ float b_tile[kF32Depth][kF32Tile + 1];

  const int tid = threadIdx.x;
  const int tx = tid % 16, ty = tid / 16;

  for (int64_t batch = blockIdx.z; batch < p.batch; batch += gridDim.z) {
    const float* a = p.a + batch * p.stride_a;
    const float* b = p.b + batch * p.stride_b;
    float* c = p.c + batch * p.stride_c;
    for (int64_t tile_m = blockIdx.y; tile_m < tiles_m; tile_m += gridDim.y) {
      for (int64_t tile_n = blockIdx.x; tile_n < tiles_n; tile_n += gridDim.x) {
        const int64_t row0 = tile_m * kF32Tile, col0 = tile_n * kF32Tile;
        float acc[4][4];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

        for (int64_t k0 = 0; k0 < p.k; k0 += kF32Depth) {
          // Consecutive threads walk the stored rows' contiguous dimension (coalesced).
          for (int e = tid; e < kF32Tile * kF32Depth; e += kF32Threads) {
            const int r = kTransA ? e % kF32Tile : e / kF32Depth;  // row within tile
            const int kk = kTransA ? e / kF32Tile : e % kF32Depth;
            const int64_t gr = row0 + r, gk = k0 + kk;
            a_tile[kk][r] = (gr < p.m && gk < p.k) ? *element_of_a<kTransA>(a, p.lda, gr, gk) : 0.0f;
          }
          for (int e = tid; e < kF32Tile * kF32Depth; e += kF32Threads) {
            const int cc = kTransB ? e / kF32Depth : e % kF32Tile;  // column within tile
            const int kk = kTransB ? e % kF32Depth : e / kF32Tile;
            const int64_t gk = k0 + kk, gc = col0 + cc;
            b_tile[kk][cc] = (gk < p.k && gc < p.n) ? *element_of_b<kTransB>(b, p.ldb, gk, gc) : 0.0f;
          }
          __syncthreads();
#pragma unroll
          for (int kk = 0; kk < kF32Depth; ++kk) {
            float a_reg[4], b_reg[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) a_reg[i] = a_tile[kk][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; ++j) b_reg[j] = b_tile[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
              for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a_reg[i], b_reg[j], acc[i][j]);
          }
          __syncthreads();  // the tiles are overwritten next slice
        }

#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int64_t gr = row0 + ty + 16 * i;
          if (gr >= p.m) continue;
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            const int64_t gc = col0 + tx + 16 * j;
            if (gc < p.n) c[gr * p.ldc + gc] = acc[i][j];
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------
// bf16/f16: 64×64 block tile, 32-deep k slices, 4 warps as 2×2, each warp a 32×32
// sub-tile of 2×2 WMMA fragments. Shared leading dimensions are padded by 8 halves /
// 4 floats: WMMA needs multiples of 16 bytes, and every fragment pointer used below
// lands on a 32-byte boundary (checked by the static_asserts).
constexpr int kWmmaTile = 64;
constexpr int kWmmaDepth = 32;
constexpr int kWmmaThreads = 128;
constexpr int kFrag = 16;
constexpr int kALd = kWmmaDepth + 8;  // a_tile is [kWmmaTile][kALd], row-major (m, k)
constexpr int kBLd = kWmmaTile + 8;   // b_tile is [kWmmaDepth][kBLd], row-major (k, n)
constexpr int kCLd = kWmmaTile + 4;   // c_tile is [kWmmaTile][kCLd] floats
constexpr int kABytes = kWmmaTile * kALd * 2;
constexpr int kBBytes = kWmmaDepth * kBLd * 2;
constexpr int kCBytes = kWmmaTile * kCLd * 4;
static_assert(kALd % 8 == 0 && kBLd % 8 == 0 && kCLd % 4 == 0, "WMMA ldm must be a multiple of 16 bytes");
static_assert((kFrag * kALd * 2) % 32 == 0 && (kFrag * 2) % 32 == 0, "a fragments 32-byte aligned");
static_assert((kFrag * kBLd * 2) % 32 == 0, "b fragments 32-byte aligned");
static_assert((kFrag * kCLd * 4) % 32 == 0 && (kFrag * 4) % 32 == 0, "c fragments 32-byte aligned");
static_assert(kABytes % 128 == 0 && kBBytes % 128 == 0, "sub-buffers keep the base alignment");

template <typename T, bool kTransA, bool kTransB>
__global__ void __launch_bounds__(kWmmaThreads) gemm_wmma_kernel(GemmArgs<T> p, int64_t tiles_m, int64_t tiles_n) {
  namespace wmma = nvcuda::wmma;
  // Raw bytes, carved into typed tiles: avoids constructors on __shared__ variables.
  __shared__ __align__(128) unsigned char smem[kABytes + kBBytes + kCBytes];
  T* a_tile = reinterpret_cast<T*>(smem);
  T* b_tile = reinterpret_cast<T*>(smem + kABytes);
  float* c_tile = reinterpret_cast<float*>(smem + kABytes + kBBytes);

  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int warp_row = (warp / 2) * 32, warp_col = (warp % 2) * 32;

  for (int64_t batch = blockIdx.z; batch < p.batch; batch += gridDim.z) {
    const T* a = p.a + batch * p.stride_a;
    const T* b = p.b + batch * p.stride_b;
    T* c = p.c + batch * p.stride_c;
    for (int64_t tile_m = blockIdx.y; tile_m < tiles_m; tile_m += gridDim.y) {
      for (int64_t tile_n = blockIdx.x; tile_n < tiles_n; tile_n += gridDim.x) {
        const int64_t row0 = tile_m * kWmmaTile, col0 = tile_n * kWmmaTile;
        wmma::fragment<wmma::accumulator, kFrag, kFrag, kFrag, float> acc[2][2];
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
          for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

        for (int64_t k0 = 0; k0 < p.k; k0 += kWmmaDepth) {
          // Consecutive threads walk the stored rows' contiguous dimension (coalesced).
          for (int e = tid; e < kWmmaTile * kWmmaDepth; e += kWmmaThreads) {
            const int r = kTransA ? e % kWmmaTile : e / kWmmaDepth;
            const int kk = kTransA ? e / kWmmaTile : e % kWmmaDepth;
            const int64_t gr = row0 + r, gk = k0 + kk;
            T* dst = a_tile + r * kALd + kk;
            if (gr < p.m && gk < p.k)
              *dst = *element_of_a<kTransA>(a, p.lda, gr, gk);
            else
              zero_value(dst);
          }
          for (int e = tid; e < kWmmaDepth * kWmmaTile; e += kWmmaThreads) {
            const int cc = kTransB ? e / kWmmaDepth : e % kWmmaTile;
            const int kk = kTransB ? e % kWmmaDepth : e / kWmmaTile;
            const int64_t gk = k0 + kk, gc = col0 + cc;
            T* dst = b_tile + kk * kBLd + cc;
            if (gk < p.k && gc < p.n)
              *dst = *element_of_b<kTransB>(b, p.ldb, gk, gc);
            else
              zero_value(dst);
          }
          __syncthreads();
#pragma unroll
          for (int kk = 0; kk < kWmmaDepth; kk += kFrag) {
            wmma::fragment<wmma::matrix_a, kFrag, kFrag, kFrag, T, wmma::row_major> a_frag[2];
            wmma::fragment<wmma::matrix_b, kFrag, kFrag, kFrag, T, wmma::row_major> b_frag[2];
#pragma unroll
            for (int i = 0; i < 2; ++i)
              wmma::load_matrix_sync(a_frag[i], a_tile + (warp_row + i * kFrag) * kALd + kk, kALd);
#pragma unroll
            for (int j = 0; j < 2; ++j)
              wmma::load_matrix_sync(b_frag[j], b_tile + kk * kBLd + warp_col + j * kFrag, kBLd);
#pragma unroll
            for (int i = 0; i < 2; ++i)
#pragma unroll
              for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a_frag[i], b_frag[j], acc[i][j]);
          }
          __syncthreads();  // the tiles are overwritten next slice
        }

        // Accumulators go through shared memory so the partial edge tiles can be
        // written element by element with bounds checks.
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
          for (int j = 0; j < 2; ++j)
            wmma::store_matrix_sync(c_tile + (warp_row + i * kFrag) * kCLd + warp_col + j * kFrag, acc[i][j], kCLd,
                                    wmma::mem_row_major);
        __syncthreads();
        for (int e = tid; e < kWmmaTile * kWmmaTile; e += kWmmaThreads) {
          const int r = e / kWmmaTile, cc = e % kWmmaTile;
          const int64_t gr = row0 + r, gc = col0 + cc;
          if (gr < p.m && gc < p.n) store_value(c + gr * p.ldc + gc, c_tile[r * kCLd + cc]);
        }
        __syncthreads();  // c_tile is overwritten by the next output tile
      }
    }
  }
}

// ---------------------------------------------------------------------------------

dim3 grid_for(int64_t tiles_m, int64_t tiles_n, int64_t batch) {
  // The kernels loop over whatever the grid does not cover.
  const int64_t max_x = 2147483647, max_yz = 65535;
  return dim3(static_cast<unsigned>(std::min(tiles_n, max_x)), static_cast<unsigned>(std::min(tiles_m, max_yz)),
              static_cast<unsigned>(std::min(batch, max_yz)));
}

template <typename T>
GemmArgs<T> typed_args(const GemmProblem& p) {
  return GemmArgs<T>{p.batch,
                     p.m,
                     p.n,
                     p.k,
                     static_cast<const T*>(p.a),
                     p.lda,
                     p.stride_a,
                     static_cast<const T*>(p.b),
                     p.ldb,
                     p.stride_b,
                     static_cast<T*>(p.c),
                     p.ldc,
                     p.stride_c};
}

template <bool kTransA, bool kTransB>
void launch_f32(const GemmProblem& p, cudaStream_t stream) {
  const int64_t tiles_m = (p.m + kF32Tile - 1) / kF32Tile, tiles_n = (p.n + kF32Tile - 1) / kF32Tile;
  gemm_f32_kernel<kTransA, kTransB>
      <<<grid_for(tiles_m, tiles_n, p.batch), kF32Threads, 0, stream>>>(typed_args<float>(p), tiles_m, tiles_n);
}

template <typename T, bool kTransA, bool kTransB>
void launch_wmma(const GemmProblem& p, cudaStream_t stream) {
  const int64_t tiles_m = (p.m + kWmmaTile - 1) / kWmmaTile, tiles_n = (p.n + kWmmaTile - 1) / kWmmaTile;
  gemm_wmma_kernel<T, kTransA, kTransB>
      <<<grid_for(tiles_m, tiles_n, p.batch), kWmmaThreads, 0, stream>>>(typed_args<T>(p), tiles_m, tiles_n);
}

// Picks the instantiation for the runtime transpose flags.
template <template <bool, bool> class Launch>
void dispatch_trans(const GemmProblem& p, cudaStream_t stream) {
  if (p.trans_a) {
    if (p.trans_b)
      Launch<true, true>::run(p, stream);
    else
      Launch<true, false>::run(p, stream);
  } else {
    if (p.trans_b)
      Launch<false, true>::run(p, stream);
    else
      Launch<false, false>::run(p, stream);
  }
}

template <bool kTransA, bool kTransB>
struct LaunchF32 {
  static void run(const GemmProblem& p, cudaStream_t s) { launch_f32<kTransA, kTransB>(p, s); }
};
template <bool kTransA, bool kTransB>
struct LaunchBF16 {
  static void run(const GemmProblem& p, cudaStream_t s) { launch_wmma<__nv_bfloat16, kTransA, kTransB>(p, s); }
};
template <bool kTransA, bool kTransB>
struct LaunchF16 {
  static void run(const GemmProblem& p, cudaStream_t s) { launch_wmma<__half, kTransA, kTransB>(p, s); }
};

}  // namespace

void gemm(const GemmProblem& p, void* stream) {
  R1V_CHECK(p.batch >= 0 && p.m >= 0 && p.n >= 0 && p.k >= 0, Argument, "gemm: negative size (batch ", p.batch, ", m ",
            p.m, ", n ", p.n, ", k ", p.k, ")");
  if (p.batch == 0 || p.m == 0 || p.n == 0) return;
  R1V_CHECK(p.c != nullptr && (p.k == 0 || (p.a != nullptr && p.b != nullptr)), Argument, "gemm: null operand");
  R1V_CHECK(p.lda >= (p.trans_a ? p.m : p.k) && p.ldb >= (p.trans_b ? p.k : p.n) && p.ldc >= p.n, Argument,
            "gemm: leading dimension too small (lda ", p.lda, ", ldb ", p.ldb, ", ldc ", p.ldc, ")");
  R1V_CHECK(p.stride_a >= 0 && p.stride_b >= 0 && p.stride_c >= 0, Argument, "gemm: negative batch stride");

  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (p.dtype) {
    case DType::F32:
      dispatch_trans<LaunchF32>(p, s);
      break;
    case DType::BF16:
      dispatch_trans<LaunchBF16>(p, s);
      break;
    case DType::F16:
      dispatch_trans<LaunchF16>(p, s);
      break;
    default:
      fail(ErrorCode::DType, "gemm: unsupported dtype ", dtype_name(p.dtype), " on CUDA");
  }
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) fail(ErrorCode::Cuda, "gemm kernel launch failed: ", cudaGetErrorString(err));
}

}  // namespace r1v::cuda

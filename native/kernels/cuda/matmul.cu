// CUDA GEMM: C_i = act(op(A_i) · op(B_i) + bias) for each batch index i, row-major, f32
// accumulation, with GemmProblem's epilogue.
// cuBLASLt when loaded (bias through its BIAS epilogue, accumulate through beta = 1,
// GELU/SiLU and pre_activation through a small elementwise kernel afterwards: its own
// GELU epilogue is the tanh approximation). Otherwise, or when it declines the problem,
// the engine's kernels, which apply the whole epilogue as they store C:
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
#include <climits>
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

#include "../../core/cublaslt.h"
#include "../../core/dtype.h"
#include "../../core/error.h"
#include "../../core/tensor.h"
#include "../matmul.h"
#include "cuda_common.cuh"

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
  const T* bias;  // [n] or nullptr
  T* pre;         // laid out like c, or nullptr
  Activation activation;
  bool accumulate;
};

constexpr float kSqrtHalf = 0.70710678118654752f;

// GELU as z·Φ(z) = ½z·erfc(−z/√2): accurate in the negative tail, where 1 + erf cancels.
__device__ __forceinline__ float activate(float z, Activation act) {
  switch (act) {
    case Activation::Gelu:
      return 0.5f * z * erfcf(-z * kSqrtHalf);
    case Activation::Silu:
      return z / (1.0f + expf(-z));
    default:
      return z;
  }
}

// The epilogue of the output element at `offset` (in column col): z = acc + bias[col];
// pre = z; C = act(z), or C += act(z).
template <typename T>
__device__ __forceinline__ void store_output(const GemmArgs<T>& p, int64_t offset, int64_t col, float acc) {
  const float z = p.bias ? acc + to_float(p.bias[col]) : acc;
  if (p.pre) p.pre[offset] = from_float<T>(z);
  float y = activate(z, p.activation);
  if (p.accumulate) y += to_float(p.c[offset]);
  p.c[offset] = from_float<T>(y);
}

// Zero padding of the 16-bit types.
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
            if (gc < p.n) store_output(p, batch * p.stride_c + gr * p.ldc + gc, gc, acc[i][j]);
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
          if (gr < p.m && gc < p.n) store_output(p, batch * p.stride_c + gr * p.ldc + gc, gc, c_tile[r * kCLd + cc]);
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
                     p.stride_c,
                     static_cast<const T*>(p.bias),
                     static_cast<T*>(p.pre_activation),
                     p.activation,
                     p.accumulate};
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

// ---------------------------------------------------------------------------------
// cuBLASLt

// C = act(z), or C += act(z), elementwise, where z (laid out like C; may be C itself) is
// what cuBLASLt wrote, bias included.
template <typename T>
__global__ void activation_epilogue_kernel(int64_t batch, int64_t m, int64_t n, int64_t ldc, int64_t stride_c,
                                           const T* z, T* c, Activation act, bool accumulate) {
  const int64_t total = batch * m * n;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = e % n, row = e / n;
    const int64_t offset = (row / m) * stride_c + (row % m) * ldc + j;
    float y = activate(to_float(z[offset]), act);
    if (accumulate) y += to_float(c[offset]);
    c[offset] = from_float<T>(y);
  }
}

template <typename T>
void launch_activation_epilogue(const GemmProblem& p, const void* z, cudaStream_t stream) {
  constexpr int kThreads = 256;
  const int64_t total = p.batch * p.m * p.n;
  const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, 1 << 20);  // the rest loop
  activation_epilogue_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      p.batch, p.m, p.n, p.ldc, p.stride_c, static_cast<const T*>(z), static_cast<T*>(p.c), p.activation,
      p.accumulate);
}

// One cuBLASLt descriptor, destroyed with its library's destroy function.
struct LtObject {
  void* ptr = nullptr;
  cublaslt::Status (*destroy)(void*) = nullptr;
  explicit LtObject(cublaslt::Status (*destroy_fn)(void*)) : destroy(destroy_fn) {}
  LtObject(const LtObject&) = delete;
  LtObject& operator=(const LtObject&) = delete;
  ~LtObject() {
    if (ptr) destroy(ptr);
  }
};

// The cuBLASLt handle of a device (created on first use, kept for the process); nullptr
// when creation failed, and then the engine's kernels serve that device.
void* lt_handle(const cublaslt::Library& lib, int device) {
  static std::mutex mutex;
  static std::map<int, void*> handles;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = handles.find(device);
  if (it != handles.end()) return it->second;
  void* handle = nullptr;
  if (lib.create(&handle) != cublaslt::kSuccess) handle = nullptr;
  handles.emplace(device, handle);
  return handle;
}

// A column-major cuBLASLt layout of `batch` rows × cols matrices, ld and stride apart.
bool make_layout(const cublaslt::Library& lib, LtObject& layout, int32_t type, int64_t rows, int64_t cols, int64_t ld,
                 int64_t batch, int64_t stride) {
  const int32_t count = static_cast<int32_t>(batch);
  return lib.layout_create(&layout.ptr, type, static_cast<uint64_t>(rows), static_cast<uint64_t>(cols), ld) ==
             cublaslt::kSuccess &&
         lib.layout_set_attribute(layout.ptr, cublaslt::kLayoutBatchCount, &count, sizeof(count)) ==
             cublaslt::kSuccess &&
         lib.layout_set_attribute(layout.ptr, cublaslt::kLayoutStridedBatchOffset, &stride, sizeof(stride)) ==
             cublaslt::kSuccess;
}

// The alignment (bytes, at most 256) every row / column of every batch entry of a matrix
// at ptr keeps.
uint32_t alignment_of(const void* ptr, int64_t ld, int64_t stride, size_t element_size) {
  const uint64_t bits = reinterpret_cast<uintptr_t>(ptr) | static_cast<uint64_t>(ld) * element_size |
                        static_cast<uint64_t>(stride) * element_size | 256;
  return static_cast<uint32_t>(bits & (~bits + 1));
}

constexpr uint64_t kMaxWorkspaceBytes = 32ull << 20;  // what NVIDIA suggests for Hopper

// Picks the algorithm by cuBLASLt's heuristic, cached per problem shape and alignment;
// false when cuBLASLt has none for it.
bool find_algo(const cublaslt::Library& lib, void* handle, void* desc, void* first, void* second, void* out,
               const std::vector<int64_t>& key, const uint32_t alignments[4], cublaslt::HeuristicResult& result) {
  static std::mutex mutex;
  static std::map<std::vector<int64_t>, std::pair<bool, cublaslt::HeuristicResult>> cache;
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = cache.find(key);
    if (it != cache.end()) {
      result = it->second.second;
      return it->second.first;
    }
  }
  LtObject pref(lib.preference_destroy);
  bool found = lib.preference_create(&pref.ptr) == cublaslt::kSuccess &&
               lib.preference_set_attribute(pref.ptr, cublaslt::kPrefMaxWorkspaceBytes, &kMaxWorkspaceBytes,
                                            sizeof(kMaxWorkspaceBytes)) == cublaslt::kSuccess;
  const int32_t alignment_attrs[4] = {cublaslt::kPrefMinAlignmentA, cublaslt::kPrefMinAlignmentB,
                                      cublaslt::kPrefMinAlignmentC, cublaslt::kPrefMinAlignmentD};
  for (int i = 0; i < 4 && found; ++i)
    found = lib.preference_set_attribute(pref.ptr, alignment_attrs[i], &alignments[i], sizeof(uint32_t)) ==
            cublaslt::kSuccess;
  int returned = 0;
  found = found &&
          lib.algo_get_heuristic(handle, desc, first, second, out, out, pref.ptr, 1, &result, &returned) ==
              cublaslt::kSuccess &&
          returned > 0 && result.state == cublaslt::kSuccess;
  std::lock_guard<std::mutex> lock(mutex);
  cache.emplace(key, std::make_pair(found, result));
  return found;
}

// Runs p with cuBLASLt; false when it is not loaded or declines p (nothing was launched
// then, and the engine's kernels take p).
bool gemm_cublaslt(Context& ctx, const GemmProblem& p, cudaStream_t stream) {
  const cublaslt::Library* lib = cublaslt::library();
  if (!lib) return false;
  const bool activation = p.activation != Activation::None;
  // Left to the engine's kernels: K = 0 (cuBLASLt would only scale C), sizes past int32,
  // and C += act(z) without pre_activation (z would need a buffer of its own).
  if (p.k == 0 || std::max({p.m, p.n, p.k, p.batch}) > INT_MAX) return false;
  if (p.accumulate && activation && !p.pre_activation) return false;
  int32_t type = 0;
  switch (p.dtype) {
    case DType::F32:
      type = cublaslt::kDataR32F;
      break;
    case DType::BF16:
      type = cublaslt::kDataR16BF;
      break;
    case DType::F16:
      type = cublaslt::kDataR16F;
      break;
    default:
      return false;
  }
  void* handle = lt_handle(*lib, ctx.device().index);
  if (!handle) return false;

  // cuBLASLt writes z = op(A)·op(B) + bias to pre_activation when it is kept, else to C;
  // then a second pass makes C = act(z) (or C += act(z)) when anything is left to do.
  // Without that pass, accumulate is beta = 1 on C.
  const bool second_pass = activation || p.pre_activation;
  void* d = p.pre_activation ? p.pre_activation : p.c;
  const float alpha = 1.0f, beta = p.accumulate && !second_pass ? 1.0f : 0.0f;

  // Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: cuBLASLt's first
  // operand is B, its second A, and D is Cᵀ, n × m with ld ldc. C's per-column bias is
  // then one value per row of D, which is what the BIAS epilogue adds.
  LtObject desc(lib->desc_destroy);
  const int32_t op_first = p.trans_b ? cublaslt::kOpT : cublaslt::kOpN;
  const int32_t op_second = p.trans_a ? cublaslt::kOpT : cublaslt::kOpN;
  const uint32_t epilogue = p.bias ? cublaslt::kEpilogueBias : cublaslt::kEpilogueDefault;
  auto set = [&](int32_t attr, const void* value, size_t size) {
    return lib->desc_set_attribute(desc.ptr, attr, value, size) == cublaslt::kSuccess;
  };
  bool ok = lib->desc_create(&desc.ptr, cublaslt::kCompute32F, cublaslt::kDataR32F) == cublaslt::kSuccess &&
            set(cublaslt::kDescTransA, &op_first, sizeof(op_first)) &&
            set(cublaslt::kDescTransB, &op_second, sizeof(op_second)) &&
            set(cublaslt::kDescEpilogue, &epilogue, sizeof(epilogue)) &&
            (!p.bias || set(cublaslt::kDescBiasPointer, &p.bias, sizeof(p.bias)));
  LtObject first(lib->layout_destroy), second(lib->layout_destroy), out(lib->layout_destroy);
  ok = ok &&
       make_layout(*lib, first, type, p.trans_b ? p.k : p.n, p.trans_b ? p.n : p.k, p.ldb, p.batch, p.stride_b) &&
       make_layout(*lib, second, type, p.trans_a ? p.m : p.k, p.trans_a ? p.k : p.m, p.lda, p.batch, p.stride_a) &&
       make_layout(*lib, out, type, p.n, p.m, p.ldc, p.batch, p.stride_c);
  if (!ok) return false;

  const size_t element = dtype_size(p.dtype);
  const uint32_t alignments[4] = {alignment_of(p.b, p.ldb, p.stride_b, element),
                                  alignment_of(p.a, p.lda, p.stride_a, element),
                                  alignment_of(d, p.ldc, p.stride_c, element), alignment_of(d, p.ldc, p.stride_c, element)};
  const std::vector<int64_t> key{ctx.device().index, static_cast<int64_t>(p.dtype), p.trans_a, p.trans_b, p.batch,
                                 p.m, p.n, p.k, p.lda, p.ldb, p.ldc, p.stride_a, p.stride_b, p.stride_c,
                                 static_cast<int64_t>(epilogue), p.bias ? alignment_of(p.bias, 0, 0, element) : 0,
                                 beta != 0.0f, alignments[0], alignments[1], alignments[2]};
  cublaslt::HeuristicResult algo;
  if (!find_algo(*lib, handle, desc.ptr, first.ptr, second.ptr, out.ptr, key, alignments, algo)) return false;

  // The allocator hands blocks out again in stream order, so the workspace may go back as
  // soon as the work using it is queued.
  void* workspace = algo.workspace_size ? ctx.allocator().allocate(algo.workspace_size) : nullptr;
  const cublaslt::Status status = lib->matmul(handle, desc.ptr, &alpha, p.b, first.ptr, p.a, second.ptr, &beta, d,
                                              out.ptr, d, out.ptr, &algo.algo, workspace, algo.workspace_size, stream);
  if (workspace) ctx.allocator().deallocate(workspace, algo.workspace_size);
  if (status != cublaslt::kSuccess) return false;
  if (second_pass) {
    switch (p.dtype) {
      case DType::F32:
        launch_activation_epilogue<float>(p, d, stream);
        break;
      case DType::BF16:
        launch_activation_epilogue<__nv_bfloat16>(p, d, stream);
        break;
      default:
        launch_activation_epilogue<__half>(p, d, stream);
        break;
    }
  }
  return true;
}

// A batch over row-major A with one B shared by all (x·W for x [B,T,in]) is a single
// product with B·M rows when A's and C's entries follow one another row after row.
GemmProblem fold_shared_b_batch(GemmProblem p) {
  if (p.batch > 1 && p.stride_b == 0 && !p.trans_a && p.stride_a == p.m * p.lda && p.stride_c == p.m * p.ldc) {
    p.m *= p.batch;
    p.batch = 1;
    p.stride_a = p.stride_c = 0;
  }
  return p;
}

}  // namespace

void gemm(Context& ctx, const GemmProblem& p) {
  R1V_CHECK(p.batch >= 0 && p.m >= 0 && p.n >= 0 && p.k >= 0, Argument, "gemm: negative size (batch ", p.batch, ", m ",
            p.m, ", n ", p.n, ", k ", p.k, ")");
  if (p.batch == 0 || p.m == 0 || p.n == 0) return;
  R1V_CHECK(p.c != nullptr && (p.k == 0 || (p.a != nullptr && p.b != nullptr)), Argument, "gemm: null operand");
  R1V_CHECK(p.lda >= (p.trans_a ? p.m : p.k) && p.ldb >= (p.trans_b ? p.k : p.n) && p.ldc >= p.n, Argument,
            "gemm: leading dimension too small (lda ", p.lda, ", ldb ", p.ldb, ", ldc ", p.ldc, ")");
  R1V_CHECK(p.stride_a >= 0 && p.stride_b >= 0 && p.stride_c >= 0, Argument, "gemm: negative batch stride");

  const GemmProblem folded = fold_shared_b_batch(p);
  cudaStream_t s = static_cast<cudaStream_t>(ctx.stream().cuda_stream());
  if (gemm_cublaslt(ctx, folded, s)) {
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) fail(ErrorCode::Cuda, "gemm epilogue launch failed: ", cudaGetErrorString(err));
    return;
  }
  switch (p.dtype) {
    case DType::F32:
      dispatch_trans<LaunchF32>(folded, s);
      break;
    case DType::BF16:
      dispatch_trans<LaunchBF16>(folded, s);
      break;
    case DType::F16:
      dispatch_trans<LaunchF16>(folded, s);
      break;
    default:
      fail(ErrorCode::DType, "gemm: unsupported dtype ", dtype_name(p.dtype), " on CUDA");
  }
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) fail(ErrorCode::Cuda, "gemm kernel launch failed: ", cudaGetErrorString(err));
}

}  // namespace r1v::cuda

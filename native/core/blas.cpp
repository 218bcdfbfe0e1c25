#include "blas.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

namespace r1v {

namespace {

// CBLAS enum values (cblas.h): row-major 101, no-transpose 111, transpose 112.
using CblasSgemm = void (*)(int order, int trans_a, int trans_b, int m, int n, int k, float alpha, const float* a,
                            int lda, const float* b, int ldb, float beta, float* c, int ldc);
using SetThreads = void (*)(int);

CblasSgemm cblas_sgemm_fn = nullptr;
SetThreads set_threads_fn = nullptr;

void sgemm_row_major(bool trans_a, bool trans_b, int m, int n, int k, const float* a, int lda, const float* b, int ldb,
                     float* c, int ldc) {
  cblas_sgemm_fn(101, trans_a ? 112 : 111, trans_b ? 112 : 111, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
}

BlasLibrary* load_blas() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("R1V_BLAS")) {
    std::string value = env;
    if (value == "off" || value == "0" || value == "none") return nullptr;
    if (!value.empty()) candidates.push_back(value);
  }
#ifdef R1V_BLAS_LIBRARY
  candidates.push_back(R1V_BLAS_LIBRARY);
#endif
  for (const char* name : {"libopenblas.so.0", "libopenblas.so", "libcblas.so.3", "libblas.so.3"})
    candidates.push_back(name);
  for (const auto& path : candidates) {
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) continue;
    auto sgemm = reinterpret_cast<CblasSgemm>(dlsym(handle, "cblas_sgemm"));
    if (!sgemm) {
      dlclose(handle);
      continue;
    }
    cblas_sgemm_fn = sgemm;
    set_threads_fn = reinterpret_cast<SetThreads>(dlsym(handle, "openblas_set_num_threads"));
    auto* lib = new BlasLibrary();  // lives as long as the process, like the dlopen handle
    lib->sgemm = sgemm_row_major;
    lib->path = path;
    return lib;
  }
  dlerror();  // clear the message of the last failed attempt
  return nullptr;
}

}  // namespace

const BlasLibrary* blas() {
  static BlasLibrary* lib = nullptr;
  static std::once_flag once;
  std::call_once(once, [] { lib = load_blas(); });
  return lib;
}

void blas_set_threads(int threads) {
  if (blas() && set_threads_fn) set_threads_fn(threads);
}

}  // namespace r1v

// The system BLAS, loaded at run time (dlopen) so the addon has no link-time dependency
// on it. Order tried: $R1V_BLAS (a path, or "off"), the library the build found, then
// common OpenBLAS / reference CBLAS names.
#pragma once
#include <string>

namespace r1v {

struct BlasLibrary {
  // C = op(A)·op(B), row-major, f32 (cblas_sgemm with alpha 1, beta 0).
  void (*sgemm)(bool trans_a, bool trans_b, int m, int n, int k, const float* a, int lda, const float* b, int ldb,
                float* c, int ldc) = nullptr;
  std::string path;  // what was loaded
};

// nullptr when no BLAS could be loaded. Loaded once; thread-safe.
const BlasLibrary* blas();

// Sets the thread count of the loaded BLAS when it exposes one (OpenBLAS does).
void blas_set_threads(int threads);

}  // namespace r1v

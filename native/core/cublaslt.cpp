#include "cublaslt.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <string>

namespace r1v::cublaslt {

namespace {

template <typename Fn>
bool bind(void* handle, const char* name, Fn& fn) {
  fn = reinterpret_cast<Fn>(dlsym(handle, name));
  return fn != nullptr;
}

Library* load() {
#if R1V_WITH_CUDA
  if (const char* env = std::getenv("R1V_CUBLASLT")) {
    std::string value = env;
    if (value == "0" || value == "off" || value == "none") return nullptr;
  }
  for (const char* path : {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"}) {
    void* handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) continue;
    auto* lib = new Library();  // lives as long as the process, like the dlopen handle
    lib->path = path;
    if (bind(handle, "cublasLtCreate", lib->create) && bind(handle, "cublasLtMatmulDescCreate", lib->desc_create) &&
        bind(handle, "cublasLtMatmulDescDestroy", lib->desc_destroy) &&
        bind(handle, "cublasLtMatmulDescSetAttribute", lib->desc_set_attribute) &&
        bind(handle, "cublasLtMatrixLayoutCreate", lib->layout_create) &&
        bind(handle, "cublasLtMatrixLayoutDestroy", lib->layout_destroy) &&
        bind(handle, "cublasLtMatrixLayoutSetAttribute", lib->layout_set_attribute) &&
        bind(handle, "cublasLtMatmulPreferenceCreate", lib->preference_create) &&
        bind(handle, "cublasLtMatmulPreferenceDestroy", lib->preference_destroy) &&
        bind(handle, "cublasLtMatmulPreferenceSetAttribute", lib->preference_set_attribute) &&
        bind(handle, "cublasLtMatmulAlgoGetHeuristic", lib->algo_get_heuristic) &&
        bind(handle, "cublasLtMatmul", lib->matmul)) {
      return lib;
    }
    delete lib;
    dlclose(handle);
  }
  dlerror();  // clear the message of the last failed attempt
#endif
  return nullptr;
}

}  // namespace

const Library* library() {
  static Library* lib = nullptr;
  static std::once_flag once;
  std::call_once(once, [] { lib = load(); });
  return lib;
}

}  // namespace r1v::cublaslt

#include "mpi_library.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

#include "../core/error.h"

namespace r1v {

namespace {

// The directory of the binary this function is in (the addon).
std::string addon_directory() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&addon_directory), &info) == 0 || info.dli_fname == nullptr) return ".";
  std::string path = info.dli_fname;
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

}  // namespace

const R1vMpiApi& mpi_library() {
  static std::mutex mutex;
  static const R1vMpiApi* api = nullptr;
  std::lock_guard<std::mutex> lock(mutex);
  if (api) return *api;
  const char* from_env = std::getenv("R1V_MPI_LIBRARY");
  std::string path = from_env && *from_env ? from_env : addon_directory() + "/libr1v_mpi.so";
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (!handle) {
    const char* why = dlerror();
    fail(ErrorCode::Distributed, "the MPI backend of the collectives could not be loaded from ", path, " (",
         why ? why : "unknown error",
         "). This process was started by an MPI launcher, so r1v needs its MPI backend: install Open MPI's "
         "development files (Debian/Ubuntu: apt-get install libopenmpi-dev openmpi-bin) and rebuild with CMake "
         "(npm run build:addon), which builds libr1v_mpi.so beside r1v.node when it finds MPI (the node-gyp build "
         "has no MPI backend). Set R1V_MPI_LIBRARY=/path/to/libr1v_mpi.so to load a specific build.");
  }
  auto entry = reinterpret_cast<const R1vMpiApi* (*)()>(dlsym(handle, "r1v_mpi_api"));
  const R1vMpiApi* table = entry ? entry() : nullptr;
  if (!table || table->abi_version != kR1vMpiAbiVersion)
    fail(ErrorCode::Distributed, path, " is not the MPI backend of this build of r1v (",
         table ? "another version" : "no r1v_mpi_api", "); rebuild with npm run build:addon");
  api = table;
  return *api;
}

}  // namespace r1v

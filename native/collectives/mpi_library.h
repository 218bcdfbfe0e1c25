// Loads libr1v_mpi.so (the MPI backend, see mpi_api.h) on first use, from $R1V_MPI_LIBRARY or
// beside the addon binary, with RTLD_NOW | RTLD_GLOBAL (Open MPI's plugins need libmpi's symbols
// global; loaded local, MPI_Init fails inside the plugin loader). Never unloaded.
#pragma once
#include <string>

#include "mpi_api.h"

namespace r1v {

// The backend's table. Throws Error(Distributed) saying what to install and rebuild when the
// library is absent (a build without MPI, or the node-gyp build) or cannot be loaded.
const R1vMpiApi& mpi_library();

}  // namespace r1v

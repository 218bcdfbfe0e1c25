// (being written) connector op bindings.
#include "ops.h"

namespace r1v::bindings {

void register_connector_ops(Napi::Env env, Napi::Object exports) {}

}  // namespace r1v::bindings

// (being written) token_stats op bindings.
#include "ops.h"

namespace r1v::bindings {

void register_token_stats_ops(Napi::Env env, Napi::Object exports) {}

}  // namespace r1v::bindings

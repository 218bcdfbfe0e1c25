// (being written) attention op bindings.
#include "ops.h"

namespace r1v::bindings {

void register_attention_ops(Napi::Env env, Napi::Object exports) {}

}  // namespace r1v::bindings

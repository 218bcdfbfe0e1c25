// patchify(pixels, { patch }), unpatchify(patches, { channels, height, width, patch }).
#include <cmath>

#include "../native/ops/patchify.h"
#include "args.h"
#include "errors.h"
#include "ops.h"
#include "tensor_handle.h"

namespace r1v::bindings {

namespace {

// A required integer option; the op checks its range.
int64_t read_int_option(const std::optional<Napi::Object>& options, const char* key, const char* fn) {
  std::optional<double> v = read_number_option(options, key, fn);
  if (!v) fail(ErrorCode::Argument, fn, ": options.", key, " is required");
  if (*v != std::floor(*v) || std::fabs(*v) > 2147483647.0)
    fail(ErrorCode::Argument, fn, ": ", key, " must be an integer, got ", *v);
  return static_cast<int64_t>(*v);
}

Napi::Value patchify_op(const Napi::CallbackInfo& info) {
  const char* fn = "patchify";
  expect_count(info, 2, 2, fn);
  auto options = read_options(info[1], "patchify: options");
  check_option_keys(options, {"patch"}, fn);
  const Tensor& pixels = TensorHandle::unwrap(info[0], "patchify: pixels");
  return TensorHandle::wrap(info.Env(), r1v::patchify(pixels, read_int_option(options, "patch", fn)));
}

Napi::Value unpatchify_op(const Napi::CallbackInfo& info) {
  const char* fn = "unpatchify";
  expect_count(info, 2, 2, fn);
  auto options = read_options(info[1], "unpatchify: options");
  check_option_keys(options, {"channels", "height", "width", "patch"}, fn);
  const Tensor& patches = TensorHandle::unwrap(info[0], "unpatchify: patches");
  return TensorHandle::wrap(
      info.Env(),
      r1v::unpatchify(patches, read_int_option(options, "channels", fn), read_int_option(options, "height", fn),
                      read_int_option(options, "width", fn), read_int_option(options, "patch", fn)));
}

}  // namespace

void register_patchify_ops(Napi::Env env, Napi::Object exports) {
  export_op<patchify_op>(env, exports, "patchify");
  export_op<unpatchify_op>(env, exports, "unpatchify");
}

}  // namespace r1v::bindings

#include "errors.h"

#include <new>

#include "addon_data.h"

namespace r1v::bindings {

Napi::Error make_error(Napi::Env env, ErrorCode code, const std::string& message) {
  AddonData* data = AddonData::get(env);
  Napi::String js_code = Napi::String::New(env, error_code_name(code));
  Napi::String js_message = Napi::String::New(env, message);
  if (data && !data->error_class.IsEmpty()) {
    try {
      Napi::Object error = data->error_class.New({js_code, js_message});
      return Napi::Error(env, error);
    } catch (const Napi::Error&) {
      // The registered class threw; fall back to a plain Error with the same code.
    }
  }
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", js_code);
  return error;
}

Napi::Error make_error(Napi::Env env, std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const Error& e) {
    return make_error(env, e.code(), e.what());
  } catch (const std::bad_alloc&) {
    return make_error(env, ErrorCode::OOM, "out of host memory");
  } catch (const std::exception& e) {
    return make_error(env, ErrorCode::Argument, e.what());
  } catch (...) {
    return make_error(env, ErrorCode::Argument, "unknown native error");
  }
}

}  // namespace r1v::bindings

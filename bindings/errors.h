// Turns native failures into JavaScript R1VError objects (the class the TypeScript layer
// registers with setErrorClass), so every error a caller sees has a `.code`.
#pragma once
#include <napi.h>

#include <exception>
#include <string>

#include "../native/core/error.h"

namespace r1v::bindings {

Napi::Error make_error(Napi::Env env, ErrorCode code, const std::string& message);
Napi::Error make_error(Napi::Env env, std::exception_ptr error);

// Runs body; any C++ exception leaves as a thrown R1VError instead of ending the process.
template <typename Body>
Napi::Value guarded(Napi::Env env, Body&& body) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw make_error(env, std::current_exception());
  }
}

}  // namespace r1v::bindings

// Errors raised by the native core. Each carries a code that the bindings map to
// R1VError.code in JavaScript, so callers can branch on the kind of failure.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace r1v {

enum class ErrorCode { Argument, Shape, DType, Device, Disposed, OOM, Cuda, IO, Config, Distributed };

inline const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::Argument:
      return "ARGUMENT";
    case ErrorCode::Shape:
      return "SHAPE";
    case ErrorCode::DType:
      return "DTYPE";
    case ErrorCode::Device:
      return "DEVICE";
    case ErrorCode::Disposed:
      return "DISPOSED";
    case ErrorCode::OOM:
      return "OOM";
    case ErrorCode::Cuda:
      return "CUDA";
    case ErrorCode::IO:
      return "IO";
    case ErrorCode::Config:
      return "CONFIG";
    case ErrorCode::Distributed:
      return "DISTRIBUTED";
  }
  return "ARGUMENT";
}

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

template <typename... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream out;
  (out << ... << std::forward<Parts>(parts));
  return out.str();
}

template <typename... Parts>
[[noreturn]] void fail(ErrorCode code, Parts&&... parts) {
  throw Error(code, concat(std::forward<Parts>(parts)...));
}

}  // namespace r1v

// Checks a condition and throws r1v::Error(code, message parts...) when it is false.
#define R1V_CHECK(cond, code, ...)                                 \
  do {                                                             \
    if (!(cond)) ::r1v::fail(::r1v::ErrorCode::code, __VA_ARGS__); \
  } while (0)

// Element types and the host-side conversions between f32 and the 16-bit floats.
// Conversions round to nearest even; NaN stays NaN (quieted) and ±Inf stays ±Inf.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

namespace r1v {

enum class DType : uint8_t { F32, BF16, F16, I32 };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32:
      return 4;
    case DType::BF16:
      return 2;
    case DType::F16:
      return 2;
    case DType::I32:
      return 4;
  }
  return 4;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "f32";
    case DType::BF16:
      return "bf16";
    case DType::F16:
      return "f16";
    case DType::I32:
      return "i32";
  }
  return "?";
}

inline bool is_floating(DType t) { return t != DType::I32; }

// Returns false when the name is not a dtype.
inline bool parse_dtype(const std::string& name, DType* out) {
  if (name == "f32")
    *out = DType::F32;
  else if (name == "bf16")
    *out = DType::BF16;
  else if (name == "f16")
    *out = DType::F16;
  else if (name == "i32")
    *out = DType::I32;
  else
    return false;
  return true;
}

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t float_to_bf16_bits(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even; overflow carries into Inf
  return static_cast<uint16_t>(u >> 16);
}

inline float bf16_bits_to_float(uint16_t h) { return bits_float(static_cast<uint32_t>(h) << 16); }

inline uint16_t float_to_f16_bits(float f) {
  uint32_t x = float_bits(f);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));  // NaN
  if (ax >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // ≥ 65520 rounds to Inf
  if (ax < 0x38800000u) {
    // Below the smallest normal (2^-14): the value in units of 2^-24 is exact in f32, and
    // nearbyint rounds it to nearest even. 1024 encodes the smallest normal, as it should.
    float units = bits_float(ax) * 16777216.0f;
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::nearbyint(units)));
  }
  ax += 0xc8000fffu + ((ax >> 13) & 1u);  // rebias exponent 127 → 15 and round to nearest even
  return static_cast<uint16_t>(sign | (ax >> 13));
}

inline float f16_bits_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    float v = static_cast<float>(mant) * (1.0f / 16777216.0f);
    return bits_float(float_bits(v) | sign);
  }
  if (exp == 31) return bits_float(sign | 0x7f800000u | (mant << 13));
  return bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

}  // namespace r1v

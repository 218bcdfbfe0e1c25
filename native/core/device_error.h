// Codes that CUDA kernels leave in Stream::device_error_word() when their input data is
// invalid. Data on the device cannot be checked before launch without a round trip, so
// kernels check it in place, write NaN where the bad element leads, and the next readback
// or synchronize() raises the message below.
#pragma once

namespace r1v {

enum DeviceErrorCode : int {
  kDeviceErrorNone = 0,
  kDeviceErrorTargetOutOfRange = 1,  // a target id outside [0, V) in tokenStats / linearTokenStats
  // 2 was a separate embedding code; embedding now runs the row kernels (code 3).
  kDeviceErrorRowIndexOutOfRange = 3,  // a row index outside [0, N): gatherRows / scatter*Rows / writeRows idx, embedding ids
  kDeviceErrorDuplicateRowIndex = 4,   // a row index given twice to scatterRows / writeRows
  kDeviceErrorNothingToSample = 5,   // a sampleTokens row whose tokens are all banned, −inf or NaN
};

inline const char* device_error_message(int code) {
  switch (code) {
    case kDeviceErrorTargetOutOfRange:
      return "targets: a target id is outside [0, V) (found by the CUDA kernel; the affected outputs are NaN)";
    case kDeviceErrorRowIndexOutOfRange:
      return "idx / ids: a row index (or embedding token id) is outside [0, N) (found by a CUDA row kernel: "
             "gatherRows / embedding write NaN in that row, scatterAddRows / embeddingBackward add nothing for it, "
             "scatterRows / writeRows leave the destination rows unchanged)";
    case kDeviceErrorDuplicateRowIndex:
      return "idx: a row index appears more than once in scatterRows / writeRows (found by the CUDA kernel; the "
             "repeated destination rows are NaN)";
    case kDeviceErrorNothingToSample:
      return "sampleTokens: a row has nothing to sample (every token is banned, or its logits are -inf or NaN; "
             "found by the CUDA kernel: its token is -1 and its logprob and entropy NaN)";
    default:
      return "a CUDA kernel reported invalid input data";
  }
}

}  // namespace r1v

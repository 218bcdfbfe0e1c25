// What the CPU is and which vector ISA the built-in kernels use on it.
#pragma once
#include <string>

namespace r1v {

struct CpuInfo {
  std::string name;  // "model name" from /proc/cpuinfo, or "cpu"
  // The GEMM path in use: "avx512" | "avx2" | "generic". The best the CPU (and OS) can
  // run, unless R1V_CPU_ISA names a lower one it can run.
  std::string isa;
  int fp32_flops_per_cycle_per_core;  // from isa, assuming 2 FMA units: 64 | 32 | 8
};

// Detected once; thread-safe.
const CpuInfo& cpu_info();

// Measures the machine's fp32 peak: every pool thread runs a loop of independent FMA
// chains (enough accumulators to hide latency, with the widest ISA available) for about
// `seconds`; returns total GFLOP/s. Used by benchmarks to print "% of peak".
double measure_cpu_peak_gflops(double seconds);

}  // namespace r1v

#include "cpu_info.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "thread_pool.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace r1v {

namespace {

// __builtin_cpu_supports also checks that the OS saves the ymm/zmm state (XCR0).
bool cpu_can_run(const std::string& isa) {
  if (isa == "generic") return true;
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (isa == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (isa == "avx512") return __builtin_cpu_supports("avx512f");
#endif
  return false;
}

std::string best_isa() {
  if (cpu_can_run("avx512")) return "avx512";
  if (cpu_can_run("avx2")) return "avx2";
  return "generic";
}

// The single place that decides the GEMM path; gemm_builtin reads cpu_info().isa.
std::string choose_isa() {
  if (const char* env = std::getenv("R1V_CPU_ISA")) {
    std::string forced = env;
    if ((forced == "avx512" || forced == "avx2" || forced == "generic") && cpu_can_run(forced)) return forced;
  }
  return best_isa();
}

std::string read_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    size_t colon = line.find(':');
    if (colon == std::string::npos) break;
    size_t begin = line.find_first_not_of(" \t", colon + 1);
    if (begin == std::string::npos) break;
    size_t end = line.find_last_not_of(" \t\r");
    return line.substr(begin, end - begin + 1);
  }
  return "cpu";
}

int flops_per_cycle(const std::string& isa) {
  if (isa == "avx512") return 64;  // 2 FMA units × 16 lanes × 2 flops
  if (isa == "avx2") return 32;    // 2 FMA units × 8 lanes × 2 flops
  return 8;
}

using Clock = std::chrono::steady_clock;

// Each loop runs FMA chains until `deadline` and returns the flops it performed.
// 16 independent accumulators cover FMA latency (4-5 cycles) × 2 units with room to spare;
// acc = acc·0.5 + 1 converges to 2, so no value ever becomes denormal or infinite.
constexpr int kChains = 16;
constexpr int kItersPerCheck = 1 << 14;

#if defined(__x86_64__)
__attribute__((target("avx512f"))) double fma_chains_avx512(Clock::time_point deadline) {
  __m512 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(static_cast<float>(c));
  const __m512 mul = _mm512_set1_ps(0.5f), add = _mm512_set1_ps(1.0f);
  double flops = 0;
  do {
    for (int i = 0; i < kItersPerCheck; ++i) {
#pragma GCC unroll 16
      for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], mul, add);
    }
    flops += 2.0 * 16 * kChains * kItersPerCheck;
  } while (Clock::now() < deadline);
  __m512 sum = acc[0];
  for (int c = 1; c < kChains; ++c) sum = _mm512_add_ps(sum, acc[c]);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, sum);
  volatile float sink = lanes[0];
  (void)sink;
  return flops;
}

__attribute__((target("avx2,fma"))) double fma_chains_avx2(Clock::time_point deadline) {
  __m256 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm256_set1_ps(static_cast<float>(c));
  const __m256 mul = _mm256_set1_ps(0.5f), add = _mm256_set1_ps(1.0f);
  double flops = 0;
  do {
    for (int i = 0; i < kItersPerCheck; ++i) {
#pragma GCC unroll 16
      for (int c = 0; c < kChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], mul, add);
    }
    flops += 2.0 * 8 * kChains * kItersPerCheck;
  } while (Clock::now() < deadline);
  __m256 sum = acc[0];
  for (int c = 1; c < kChains; ++c) sum = _mm256_add_ps(sum, acc[c]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, sum);
  volatile float sink = lanes[0];
  (void)sink;
  return flops;
}
#endif

// Plain multiply-add the compiler vectorises with the baseline ISA.
double fma_chains_generic(Clock::time_point deadline) {
  constexpr int kLanes = 64;
  float acc[kLanes];
  for (int c = 0; c < kLanes; ++c) acc[c] = static_cast<float>(c);
  double flops = 0;
  do {
    for (int i = 0; i < kItersPerCheck; ++i) {
      for (int c = 0; c < kLanes; ++c) acc[c] = acc[c] * 0.5f + 1.0f;
    }
    flops += 2.0 * kLanes * kItersPerCheck;
  } while (Clock::now() < deadline);
  float sum = 0;
  for (int c = 0; c < kLanes; ++c) sum += acc[c];
  volatile float sink = sum;
  (void)sink;
  return flops;
}

double fma_chains_widest(Clock::time_point deadline) {
#if defined(__x86_64__)
  static const std::string widest = best_isa();
  if (widest == "avx512") return fma_chains_avx512(deadline);
  if (widest == "avx2") return fma_chains_avx2(deadline);
#endif
  return fma_chains_generic(deadline);
}

}  // namespace

const CpuInfo& cpu_info() {
  static const CpuInfo info = [] {
    CpuInfo i;
    i.name = read_model_name();
    i.isa = choose_isa();
    i.fp32_flops_per_cycle_per_core = flops_per_cycle(i.isa);
    return i;
  }();
  return info;
}

double measure_cpu_peak_gflops(double seconds) {
  seconds = std::max(seconds, 1e-3);
  ThreadPool& pool = ThreadPool::global();
  std::vector<double> flops(pool.num_threads(), 0.0);
  auto start = Clock::now();
  auto deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  pool.run([&](int t, int) { flops[t] = fma_chains_widest(deadline); });
  double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  double total = 0;
  for (double f : flops) total += f;
  return total / elapsed * 1e-9;
}

}  // namespace r1v

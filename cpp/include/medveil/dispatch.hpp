// Run-time choice of the instruction set every kernel uses.
//
// The CPU is read once; the best backend the CPU and the build both support is chosen
// at start-up, unless MEDVEIL_SIMD names another one. Each primitive's dispatcher asks
// active_backend() and calls its own implementation for it, so adding a primitive never
// touches this file.
#pragma once

#include <string>
#include <vector>

namespace medveil {

// avx512 (AVX-512 F/VL/BW + IFMA, on top of everything avx2 needs) has its own ChaCha20
// and Poly1305; primitives without an AVX-512 kernel run their AVX2 one under it.
enum class Backend { scalar = 0, avx2 = 1, avx512 = 2 };

// True for the backends under which the AVX2 kernels may run (avx2 and avx512).
constexpr bool has_avx2(Backend b) noexcept { return b == Backend::avx2 || b == Backend::avx512; }

const char* backend_name(Backend b) noexcept;
// Throws std::invalid_argument for an unknown name.
Backend backend_from_name(const std::string& name);

// What the CPU (and the OS, for register state) reports, independent of the build.
struct CpuFeatures {
    bool sse2 = false;
    bool avx = false;
    bool avx2 = false;
    bool fma = false;
    bool bmi2 = false;
    bool avx512f = false;
    bool avx512vl = false;
    bool avx512bw = false;
    bool avx512ifma = false;
};
const CpuFeatures& cpu_features() noexcept;

// Backends both compiled in and runnable on this CPU, portable first.
std::vector<Backend> available_backends();
bool backend_available(Backend b) noexcept;

Backend active_backend() noexcept;
// Throws std::invalid_argument if the backend is not available here.
void set_backend(Backend b);

}  // namespace medveil

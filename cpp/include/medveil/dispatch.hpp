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

enum class Backend { scalar = 0, avx2 = 1 };

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
};
const CpuFeatures& cpu_features() noexcept;

// Backends both compiled in and runnable on this CPU, portable first.
std::vector<Backend> available_backends();
bool backend_available(Backend b) noexcept;

Backend active_backend() noexcept;
// Throws std::invalid_argument if the backend is not available here.
void set_backend(Backend b);

}  // namespace medveil

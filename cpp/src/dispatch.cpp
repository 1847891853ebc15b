#include "medveil/dispatch.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace medveil {

const char* backend_name(Backend b) noexcept {
    switch (b) {
        case Backend::scalar: return "scalar";
        case Backend::avx2: return "avx2";
        case Backend::avx512: return "avx512";
    }
    return "unknown";
}

Backend backend_from_name(const std::string& name) {
    if (name == "scalar" || name == "portable") return Backend::scalar;
    if (name == "avx2") return Backend::avx2;
    if (name == "avx512") return Backend::avx512;
    throw std::invalid_argument("unknown SIMD backend '" + name +
                                "' (expected 'scalar', 'avx2', 'avx512' or 'auto')");
}

namespace {

CpuFeatures detect() noexcept {
    CpuFeatures f;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    // __builtin_cpu_supports also checks that the OS saves the wide registers (XCR0).
    __builtin_cpu_init();
    f.sse2 = __builtin_cpu_supports("sse2");
    f.avx = __builtin_cpu_supports("avx");
    f.avx2 = __builtin_cpu_supports("avx2");
    f.fma = __builtin_cpu_supports("fma");
    f.bmi2 = __builtin_cpu_supports("bmi2");
    f.avx512f = __builtin_cpu_supports("avx512f");
    f.avx512vl = __builtin_cpu_supports("avx512vl");
    f.avx512bw = __builtin_cpu_supports("avx512bw");
    f.avx512ifma = __builtin_cpu_supports("avx512ifma");
#endif
    return f;
}

bool compiled_in(Backend b) noexcept {
    switch (b) {
        case Backend::scalar: return true;
        case Backend::avx2:
#ifdef MEDVEIL_HAVE_AVX2
            return true;
#else
            return false;
#endif
        case Backend::avx512:
#ifdef MEDVEIL_HAVE_AVX512
            return true;
#else
            return false;
#endif
    }
    return false;
}

Backend best_backend() noexcept {
    if (backend_available(Backend::avx512)) return Backend::avx512;
    return backend_available(Backend::avx2) ? Backend::avx2 : Backend::scalar;
}

Backend initial_backend() noexcept {
    const char* env = std::getenv("MEDVEIL_SIMD");
    if (env == nullptr || *env == '\0' || std::strcmp(env, "auto") == 0) return best_backend();
    try {
        Backend wanted = backend_from_name(env);
        // Asking for a backend the machine lacks falls back to the portable one rather
        // than crashing on an illegal instruction.
        return backend_available(wanted) ? wanted : Backend::scalar;
    } catch (const std::invalid_argument&) {
        return Backend::scalar;
    }
}

std::atomic<int>& active_slot() noexcept {
    static std::atomic<int> slot{static_cast<int>(initial_backend())};
    return slot;
}

}  // namespace

const CpuFeatures& cpu_features() noexcept {
    static const CpuFeatures features = detect();
    return features;
}

bool backend_available(Backend b) noexcept {
    if (!compiled_in(b)) return false;
    const CpuFeatures& f = cpu_features();
    switch (b) {
        case Backend::scalar: return true;
        case Backend::avx2: return f.avx2 && f.fma && f.bmi2;
        // IFMA is required rather than optional: one test run then covers every kernel
        // the backend can run. CPUs with AVX-512F but no IFMA (Skylake-X, Cascade Lake)
        // stay on avx2.
        case Backend::avx512:
            return f.avx2 && f.fma && f.bmi2 && f.avx512f && f.avx512vl && f.avx512bw &&
                   f.avx512ifma;
    }
    return false;
}

std::vector<Backend> available_backends() {
    std::vector<Backend> out;
    for (Backend b : {Backend::scalar, Backend::avx2, Backend::avx512})
        if (backend_available(b)) out.push_back(b);
    return out;
}

Backend active_backend() noexcept {
    return static_cast<Backend>(active_slot().load(std::memory_order_relaxed));
}

void set_backend(Backend b) {
    if (!backend_available(b))
        throw std::invalid_argument(std::string("SIMD backend '") + backend_name(b) +
                                    "' is not available on this CPU or in this build");
    active_slot().store(static_cast<int>(b), std::memory_order_relaxed);
}

}  // namespace medveil

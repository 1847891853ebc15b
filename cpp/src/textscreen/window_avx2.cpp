// AVX2 kernels of window_to_u8: min/max 16 samples per step, scaling 32 per step (clamp
// to the frame's range in 16-bit lanes, float32 multiply, round half to even, pack to
// bytes). Compiled with -mavx2 and only called after the dispatcher has seen AVX2.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "medveil/textscreen.hpp"

namespace medveil::detail {
namespace {

inline std::int32_t sample(const std::uint16_t* p, std::size_t i, bool is_signed) {
    return is_signed ? static_cast<std::int32_t>(static_cast<std::int16_t>(p[i]))
                     : static_cast<std::int32_t>(p[i]);
}

template <bool Signed>
void minmax16_t(const std::uint16_t* p, std::size_t n, std::int32_t* mn, std::int32_t* mx) {
    std::int32_t lo = sample(p, 0, Signed), hi = lo;
    std::size_t i = 0;
    if (n >= 16) {
        __m256i vlo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
        __m256i vhi = vlo;
        for (i = 16; i + 16 <= n; i += 16) {
            const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i));
            if constexpr (Signed) {
                vlo = _mm256_min_epi16(vlo, v);
                vhi = _mm256_max_epi16(vhi, v);
            } else {
                vlo = _mm256_min_epu16(vlo, v);
                vhi = _mm256_max_epu16(vhi, v);
            }
        }
        alignas(32) std::uint16_t a[16], b[16];
        _mm256_store_si256(reinterpret_cast<__m256i*>(a), vlo);
        _mm256_store_si256(reinterpret_cast<__m256i*>(b), vhi);
        for (int k = 0; k < 16; ++k) {
            lo = std::min(lo, sample(a, static_cast<std::size_t>(k), Signed));
            hi = std::max(hi, sample(b, static_cast<std::size_t>(k), Signed));
        }
    }
    for (; i < n; ++i) {
        const std::int32_t v = sample(p, i, Signed);
        lo = std::min(lo, v);
        hi = std::max(hi, v);
    }
    *mn = lo;
    *mx = hi;
}

void minmax16_avx2(const std::uint16_t* p, std::size_t n, bool is_signed, std::int32_t* mn,
                   std::int32_t* mx) {
    if (is_signed)
        minmax16_t<true>(p, n, mn, mx);
    else
        minmax16_t<false>(p, n, mn, mx);
}

template <bool Invert>
void scale16_t(const std::uint16_t* p, std::size_t n, std::uint16_t flip, std::uint16_t ulo,
               std::uint16_t span, float scale, std::uint8_t* out) {
    const __m256i vflip = _mm256_set1_epi16(static_cast<short>(flip));
    const __m256i vlo = _mm256_set1_epi16(static_cast<short>(ulo));
    const __m256i vspan = _mm256_set1_epi16(static_cast<short>(span));
    const __m256i v255 = _mm256_set1_epi32(255);
    const __m256 vs = _mm256_set1_ps(scale);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    // 8 offsets d (uint16) to 8 int32 results.
    auto one = [&](__m128i d) {
        const __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(d)), vs);
        const __m256i r =
            _mm256_cvtps_epi32(_mm256_round_ps(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        return Invert ? _mm256_sub_epi32(v255, r) : r;
    };
    // 16 samples to their offsets d = min(max(u - ulo, 0), span).
    auto offsets = [&](const std::uint16_t* q) {
        const __m256i u = _mm256_xor_si256(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q)), vflip);
        return _mm256_min_epu16(_mm256_subs_epu16(u, vlo), vspan);
    };
    std::size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m256i d0 = offsets(p + i), d1 = offsets(p + i + 16);
        const __m256i r0 = one(_mm256_castsi256_si128(d0));
        const __m256i r1 = one(_mm256_extracti128_si256(d0, 1));
        const __m256i r2 = one(_mm256_castsi256_si128(d1));
        const __m256i r3 = one(_mm256_extracti128_si256(d1, 1));
        // The packs work per 128-bit lane: dwords come out as pixels 0-3, 8-11, 16-19,
        // 24-27, 4-7, 12-15, 20-23, 28-31, which the permutation puts back in order.
        const __m256i b = _mm256_packus_epi16(_mm256_packus_epi32(r0, r1),
                                              _mm256_packus_epi32(r2, r3));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                            _mm256_permutevar8x32_epi32(b, order));
    }
    for (; i < n; ++i) {
        const auto u = static_cast<std::uint16_t>(p[i] ^ flip);
        const auto d = std::min(static_cast<std::uint16_t>(u > ulo ? u - ulo : 0), span);
        const auto r = static_cast<std::int32_t>(std::nearbyint(static_cast<float>(d) * scale));
        out[i] = static_cast<std::uint8_t>(Invert ? 255 - r : r);
    }
}

void scale16_avx2(const std::uint16_t* p, std::size_t n, bool is_signed, std::uint16_t ulo,
                  std::uint16_t span, float scale, bool invert, std::uint8_t* out) {
    const std::uint16_t flip = is_signed ? 0x8000 : 0;
    if (invert)
        scale16_t<true>(p, n, flip, ulo, span, scale, out);
    else
        scale16_t<false>(p, n, flip, ulo, span, scale, out);
}

}  // namespace

const WindowKernels kWindowAvx2 = {minmax16_avx2, scale16_avx2};

}  // namespace medveil::detail

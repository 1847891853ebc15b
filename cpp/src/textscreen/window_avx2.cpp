// AVX2 kernels of window_to_u8: min/max 16 samples per step, scaling 32 per step (int32
// clamp, float32 multiply, round half to even, pack to bytes). Compiled with -mavx2 and
// only called after the dispatcher has seen AVX2.
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

template <bool Signed>
inline __m256i widen(__m128i x) {
    if constexpr (Signed)
        return _mm256_cvtepi16_epi32(x);
    else
        return _mm256_cvtepu16_epi32(x);
}

template <bool Signed, bool Invert>
void scale16_t(const std::uint16_t* p, std::size_t n, std::int32_t clip_lo,
               std::int32_t clip_hi, std::int32_t lo, float scale, std::uint8_t* out) {
    const __m256i clo = _mm256_set1_epi32(clip_lo), chi = _mm256_set1_epi32(clip_hi);
    const __m256i vlo = _mm256_set1_epi32(lo), v255 = _mm256_set1_epi32(255);
    const __m256 vs = _mm256_set1_ps(scale);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    auto one = [&](__m128i x) {
        __m256i v = _mm256_min_epi32(_mm256_max_epi32(widen<Signed>(x), clo), chi);
        const __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(v, vlo)), vs);
        v = _mm256_cvtps_epi32(_mm256_round_ps(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        return Invert ? _mm256_sub_epi32(v255, v) : v;
    };
    std::size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i));
        const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 16));
        const __m256i r0 = one(_mm256_castsi256_si128(x0));
        const __m256i r1 = one(_mm256_extracti128_si256(x0, 1));
        const __m256i r2 = one(_mm256_castsi256_si128(x1));
        const __m256i r3 = one(_mm256_extracti128_si256(x1, 1));
        // The packs work per 128-bit lane: dwords come out as pixels 0-3, 8-11, 16-19,
        // 24-27, 4-7, 12-15, 20-23, 28-31, which the permutation puts back in order.
        const __m256i b = _mm256_packus_epi16(_mm256_packus_epi32(r0, r1),
                                              _mm256_packus_epi32(r2, r3));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                            _mm256_permutevar8x32_epi32(b, order));
    }
    for (; i < n; ++i) {
        const std::int32_t v = std::min(std::max(sample(p, i, Signed), clip_lo), clip_hi);
        const auto r =
            static_cast<std::int32_t>(std::nearbyint(static_cast<float>(v - lo) * scale));
        out[i] = static_cast<std::uint8_t>(Invert ? 255 - r : r);
    }
}

void scale16_avx2(const std::uint16_t* p, std::size_t n, bool is_signed, std::int32_t clip_lo,
                  std::int32_t clip_hi, std::int32_t lo, float scale, bool invert,
                  std::uint8_t* out) {
    if (is_signed) {
        if (invert)
            scale16_t<true, true>(p, n, clip_lo, clip_hi, lo, scale, out);
        else
            scale16_t<true, false>(p, n, clip_lo, clip_hi, lo, scale, out);
    } else {
        if (invert)
            scale16_t<false, true>(p, n, clip_lo, clip_hi, lo, scale, out);
        else
            scale16_t<false, false>(p, n, clip_lo, clip_hi, lo, scale, out);
    }
}

}  // namespace

const WindowKernels kWindowAvx2 = {minmax16_avx2, scale16_avx2};

}  // namespace medveil::detail

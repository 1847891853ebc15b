// AVX-512 (F/BW/VL) kernels of window_to_u8: min/max 32 samples per step, scaling 16 per
// float32 register (clamp to the frame's range in 16-bit lanes, float32 multiply, round
// half to even, narrow to bytes), the AVX2 kernels' arithmetic. Compiled with the avx512
// backend's flags and only called after the dispatcher has seen them.
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
    if (n >= 32) {
        // Two accumulator pairs: a min/max chain per register keeps one step in flight.
        __m512i lo0 = _mm512_loadu_si512(p), hi0 = lo0, lo1 = lo0, hi1 = lo0;
        for (i = 32; i + 64 <= n; i += 64) {
            const __m512i a = _mm512_loadu_si512(p + i), b = _mm512_loadu_si512(p + i + 32);
            if constexpr (Signed) {
                lo0 = _mm512_min_epi16(lo0, a);
                hi0 = _mm512_max_epi16(hi0, a);
                lo1 = _mm512_min_epi16(lo1, b);
                hi1 = _mm512_max_epi16(hi1, b);
            } else {
                lo0 = _mm512_min_epu16(lo0, a);
                hi0 = _mm512_max_epu16(hi0, a);
                lo1 = _mm512_min_epu16(lo1, b);
                hi1 = _mm512_max_epu16(hi1, b);
            }
        }
        alignas(64) std::uint16_t a[4][32];
        _mm512_store_si512(a[0], lo0);
        _mm512_store_si512(a[1], lo1);
        _mm512_store_si512(a[2], hi0);
        _mm512_store_si512(a[3], hi1);
        for (std::size_t k = 0; k < 32; ++k) {
            lo = std::min({lo, sample(a[0], k, Signed), sample(a[1], k, Signed)});
            hi = std::max({hi, sample(a[2], k, Signed), sample(a[3], k, Signed)});
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

void minmax16_avx512(const std::uint16_t* p, std::size_t n, bool is_signed, std::int32_t* mn,
                     std::int32_t* mx) {
    if (is_signed)
        minmax16_t<true>(p, n, mn, mx);
    else
        minmax16_t<false>(p, n, mn, mx);
}

template <bool Invert>
void scale16_t(const std::uint16_t* p, std::size_t n, std::uint16_t flip, std::uint16_t ulo,
               std::uint16_t span, float scale, std::uint8_t* out) {
    const __m512i vflip = _mm512_set1_epi16(static_cast<short>(flip));
    const __m512i vlo = _mm512_set1_epi16(static_cast<short>(ulo));
    const __m512i vspan = _mm512_set1_epi16(static_cast<short>(span));
    const __m512i v255 = _mm512_set1_epi32(255);
    const __m512 vs = _mm512_set1_ps(scale);
    // 16 offsets d (uint16) to 16 bytes. The zero-masking forms with every lane set are
    // the plain instructions; GCC 12's plain intrinsics warn about their undefined
    // pass-through operand.
    const __mmask16 all = 0xFFFF;
    auto one = [&](__m256i d) {
        const __m512 f =
            _mm512_mul_ps(_mm512_maskz_cvtepi32_ps(all, _mm512_maskz_cvtepu16_epi32(all, d)), vs);
        __m512i r = _mm512_maskz_cvt_roundps_epi32(
            all, f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        if (Invert) r = _mm512_sub_epi32(v255, r);
        return _mm512_maskz_cvtepi32_epi8(all, r);
    };
    std::size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        // 32 samples to their offsets d = min(max(u - ulo, 0), span).
        const __m512i u = _mm512_xor_si512(_mm512_loadu_si512(p + i), vflip);
        const __m512i d = _mm512_min_epu16(_mm512_subs_epu16(u, vlo), vspan);
        const __m128i b0 = one(_mm512_maskz_extracti64x4_epi64(0xF, d, 0));
        const __m128i b1 = one(_mm512_maskz_extracti64x4_epi64(0xF, d, 1));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                            _mm256_inserti128_si256(_mm256_castsi128_si256(b0), b1, 1));
    }
    for (; i < n; ++i) {
        const auto u = static_cast<std::uint16_t>(p[i] ^ flip);
        const auto d = std::min(static_cast<std::uint16_t>(u > ulo ? u - ulo : 0), span);
        const auto r = static_cast<std::int32_t>(std::nearbyint(static_cast<float>(d) * scale));
        out[i] = static_cast<std::uint8_t>(Invert ? 255 - r : r);
    }
}

void scale16_avx512(const std::uint16_t* p, std::size_t n, bool is_signed, std::uint16_t ulo,
                    std::uint16_t span, float scale, bool invert, std::uint8_t* out) {
    const std::uint16_t flip = is_signed ? 0x8000 : 0;
    if (invert)
        scale16_t<true>(p, n, flip, ulo, span, scale, out);
    else
        scale16_t<false>(p, n, flip, ulo, span, scale, out);
}

}  // namespace

const WindowKernels kWindowAvx512 = {minmax16_avx512, scale16_avx512};

}  // namespace medveil::detail

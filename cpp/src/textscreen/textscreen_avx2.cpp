// AVX2 kernels of the text screen's 16-bit window pass: RGB to luma, vertical window
// sums, their row prefix sums, and the bright/dark classification, 16 or 32 pixels per
// step. Compiled with -mavx2 and only called after the dispatcher has seen AVX2.
#include <immintrin.h>

#include <cstring>

#include "medveil/textscreen.hpp"

namespace medveil::detail {
namespace {

void luma_scalar(const std::uint8_t* rgb, std::size_t n, std::uint8_t* out) {
    for (std::size_t i = 0; i < n; ++i) {
        const unsigned v = 77u * rgb[3 * i] + 150u * rgb[3 * i + 1] + 29u * rgb[3 * i + 2] + 128u;
        out[i] = static_cast<std::uint8_t>(v >> 8);
    }
}

inline __m256i load2x128(const std::uint8_t* lo, const std::uint8_t* hi) {
    return _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lo))),
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(hi)), 1);
}

// 32 pixels per step: each 128-bit lane deinterleaves 16 pixels (lane 0 pixels 0-15,
// lane 1 pixels 16-31) with byte shuffles, then 16-bit arithmetic, which cannot overflow:
// 77*255 + 150*255 + 29*255 + 128 = 65408.
void luma_avx2(const std::uint8_t* rgb, std::size_t n, std::uint8_t* out) {
    // Byte k of a 48-byte group of 16 pixels sits in chunk k / 16 at k % 16; for each
    // channel, the shuffles pick its bytes from each chunk (-1 gives zero).
    const __m256i r0 = _mm256_broadcastsi128_si256(
        _mm_setr_epi8(0, 3, 6, 9, 12, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1));
    const __m256i r1 = _mm256_broadcastsi128_si256(
        _mm_setr_epi8(-1, -1, -1, -1, -1, -1, 2, 5, 8, 11, 14, -1, -1, -1, -1, -1));
    const __m256i r2 = _mm256_broadcastsi128_si256(
        _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 1, 4, 7, 10, 13));
    const __m256i g0 = _mm256_broadcastsi128_si256(
        _mm_setr_epi8(1, 4, 7, 10, 13, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1));
    const __m256i g1 = _mm256_broadcastsi128_si256(
        _mm_setr_epi8(-1, -1, -1, -1, -1, 0, 3, 6, 9, 12, 15, -1, -1, -1, -1, -1));
    const __m256i g2 = _mm256_broadcastsi128_si256(
        _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 2, 5, 8, 11, 14));
    const __m256i b0 = _mm256_broadcastsi128_si256(
        _mm_setr_epi8(2, 5, 8, 11, 14, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1));
    const __m256i b1 = _mm256_broadcastsi128_si256(
        _mm_setr_epi8(-1, -1, -1, -1, -1, 1, 4, 7, 10, 13, -1, -1, -1, -1, -1, -1));
    const __m256i b2 = _mm256_broadcastsi128_si256(
        _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 3, 6, 9, 12, 15));
    const __m256i wr = _mm256_set1_epi16(77), wg = _mm256_set1_epi16(150);
    const __m256i wb = _mm256_set1_epi16(29), half = _mm256_set1_epi16(128);
    const __m256i zero = _mm256_setzero_si256();
    std::size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const std::uint8_t* s = rgb + 3 * i;
        const __m256i c0 = load2x128(s, s + 48);
        const __m256i c1 = load2x128(s + 16, s + 64);
        const __m256i c2 = load2x128(s + 32, s + 80);
        const __m256i R = _mm256_or_si256(
            _mm256_or_si256(_mm256_shuffle_epi8(c0, r0), _mm256_shuffle_epi8(c1, r1)),
            _mm256_shuffle_epi8(c2, r2));
        const __m256i G = _mm256_or_si256(
            _mm256_or_si256(_mm256_shuffle_epi8(c0, g0), _mm256_shuffle_epi8(c1, g1)),
            _mm256_shuffle_epi8(c2, g2));
        const __m256i B = _mm256_or_si256(
            _mm256_or_si256(_mm256_shuffle_epi8(c0, b0), _mm256_shuffle_epi8(c1, b1)),
            _mm256_shuffle_epi8(c2, b2));
        // unpacklo/hi work per lane; packus re-interleaves the lanes back in pixel order.
        __m256i lo = _mm256_add_epi16(
            _mm256_add_epi16(_mm256_mullo_epi16(_mm256_unpacklo_epi8(R, zero), wr),
                             _mm256_mullo_epi16(_mm256_unpacklo_epi8(G, zero), wg)),
            _mm256_add_epi16(_mm256_mullo_epi16(_mm256_unpacklo_epi8(B, zero), wb), half));
        __m256i hi = _mm256_add_epi16(
            _mm256_add_epi16(_mm256_mullo_epi16(_mm256_unpackhi_epi8(R, zero), wr),
                             _mm256_mullo_epi16(_mm256_unpackhi_epi8(G, zero), wg)),
            _mm256_add_epi16(_mm256_mullo_epi16(_mm256_unpackhi_epi8(B, zero), wb), half));
        lo = _mm256_srli_epi16(lo, 8);
        hi = _mm256_srli_epi16(hi, 8);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_packus_epi16(lo, hi));
    }
    luma_scalar(rgb + 3 * i, n - i, out + i);
}

inline __m256i load_u8x16(const std::uint8_t* p) {
    return _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

void colsum16_avx2(std::uint16_t* v, const std::uint8_t* add, const std::uint8_t* sub,
                   std::size_t n) {
    std::size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(v + i));
        if (add) x = _mm256_add_epi16(x, load_u8x16(add + i));
        if (sub) x = _mm256_sub_epi16(x, load_u8x16(sub + i));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(v + i), x);
    }
    for (; i < n; ++i)
        v[i] = static_cast<std::uint16_t>(v[i] + (add ? add[i] : 0) - (sub ? sub[i] : 0));
}

// Every 16-bit lane set to lane 7 of its own 128-bit half.
inline __m256i spread_lane7(__m256i x) {
    x = _mm256_shufflehi_epi16(x, 0xFF);
    return _mm256_unpackhi_epi64(x, x);
}

void prefix16_avx2(const std::uint16_t* v, std::size_t n, std::uint16_t* p) {
    __m256i carry = _mm256_set1_epi16(static_cast<short>(p[0]));
    std::size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(v + i));
        // Prefix sums within each 128-bit half (log steps), then the low half's total
        // added to the high half: the block's own prefix, independent of the carry.
        x = _mm256_add_epi16(x, _mm256_slli_si256(x, 2));
        x = _mm256_add_epi16(x, _mm256_slli_si256(x, 4));
        x = _mm256_add_epi16(x, _mm256_slli_si256(x, 8));
        x = _mm256_add_epi16(x, spread_lane7(_mm256_permute2x128_si256(x, x, 0x08)));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + i + 1), _mm256_add_epi16(x, carry));
        // The block total joins the carry off the store's dependency chain.
        carry = _mm256_add_epi16(carry, spread_lane7(_mm256_permute4x64_epi64(x, 0xFF)));
    }
    for (; i < n; ++i) p[i + 1] = static_cast<std::uint16_t>(p[i] + v[i]);
}

// Nonzero 16-bit lanes of a and b (16 pixels each, in order) as 32 bits.
inline std::uint32_t nonzero_bits(__m256i a, __m256i b) {
    const __m256i zero = _mm256_setzero_si256();
    const __m256i za = _mm256_cmpeq_epi16(a, zero), zb = _mm256_cmpeq_epi16(b, zero);
    // packs works per 128-bit lane: qwords come out as a.lo, b.lo, a.hi, b.hi.
    const __m256i z = _mm256_permute4x64_epi64(_mm256_packs_epi16(za, zb), 0xD8);
    return ~static_cast<std::uint32_t>(_mm256_movemask_epi8(z));
}

void classify16_avx2(const std::uint16_t* p, const std::uint8_t* px, std::size_t cols,
                     std::size_t r, std::uint32_t cnt, std::uint32_t tc, std::uint64_t* bright,
                     std::uint64_t* dark) {
    const __m256i vcnt = _mm256_set1_epi16(static_cast<short>(cnt));
    const __m256i vtc = _mm256_set1_epi16(static_cast<short>(tc));
    const std::uint16_t* hi_p = p + r + 1;
    const std::uint16_t* lo_p = p - static_cast<std::ptrdiff_t>(r);
    auto half = [&](std::size_t c, __m256i& b, __m256i& d) {
        const __m256i s = _mm256_sub_epi16(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(hi_p + c)),
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lo_p + c)));
        const __m256i v = _mm256_mullo_epi16(load_u8x16(px + c), vcnt);
        // Unsigned 16-bit: a - b saturates to 0 unless a > b; sums saturate at 65535,
        // which is above every v and s, so a saturated sum gives the exact answer.
        b = _mm256_subs_epu16(v, _mm256_adds_epu16(s, vtc));
        d = _mm256_subs_epu16(s, _mm256_adds_epu16(v, vtc));
    };
    std::size_t c = 0;
    for (; c + 64 <= cols; c += 64) {
        __m256i b0, d0, b1, d1, b2, d2, b3, d3;
        half(c, b0, d0);
        half(c + 16, b1, d1);
        half(c + 32, b2, d2);
        half(c + 48, b3, d3);
        bright[c / 64] = nonzero_bits(b0, b1) | std::uint64_t{nonzero_bits(b2, b3)} << 32;
        dark[c / 64] = nonzero_bits(d0, d1) | std::uint64_t{nonzero_bits(d2, d3)} << 32;
    }
    if (c < cols) {
        // The last, partial word.
        std::uint64_t b = 0, d = 0;
        for (std::size_t x = c; x < cols; ++x) {
            const std::uint32_t s = static_cast<std::uint16_t>(hi_p[x] - lo_p[x]);
            const std::uint32_t v = px[x] * cnt;
            b |= std::uint64_t{v > s + tc} << (x - c);
            d |= std::uint64_t{v + tc < s} << (x - c);
        }
        bright[c / 64] = b;
        dark[c / 64] = d;
    }
}

void absdiff_avx2(const std::uint8_t* row, std::size_t n, std::uint8_t* out) {
    std::size_t i = 0;
    for (; i + 33 <= n; i += 32) {
        const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + i));
        const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + i + 1));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                            _mm256_or_si256(_mm256_subs_epu8(a, b), _mm256_subs_epu8(b, a)));
    }
    for (; i + 1 < n; ++i)
        out[i] = static_cast<std::uint8_t>(row[i] > row[i + 1] ? row[i] - row[i + 1]
                                                               : row[i + 1] - row[i]);
}

std::size_t count_le_avx2(const std::uint8_t* d, std::size_t n, std::uint8_t k) {
    const __m256i vk = _mm256_set1_epi8(static_cast<char>(k));
    const __m256i zero = _mm256_setzero_si256();
    __m256i total = zero;  // four 64-bit counts
    std::size_t i = 0;
    while (i + 32 <= n) {
        // Byte counters gain at most one per step: flushed every 255 steps.
        __m256i bytes = zero;
        for (int s = 0; s < 255 && i + 32 <= n; ++s, i += 32) {
            const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(d + i));
            // x <= k exactly when max(x, k) == k (unsigned bytes); true is -1.
            bytes = _mm256_sub_epi8(bytes, _mm256_cmpeq_epi8(_mm256_max_epu8(x, vk), vk));
        }
        total = _mm256_add_epi64(total, _mm256_sad_epu8(bytes, zero));
    }
    alignas(32) std::uint64_t lanes[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), total);
    std::size_t c = static_cast<std::size_t>(lanes[0] + lanes[1] + lanes[2] + lanes[3]);
    for (; i < n; ++i) c += d[i] <= k;
    return c;
}

}  // namespace

const TextScreenKernels kTextScreenAvx2 = {luma_avx2,       colsum16_avx2, prefix16_avx2,
                                           classify16_avx2, absdiff_avx2,  count_le_avx2};

}  // namespace medveil::detail

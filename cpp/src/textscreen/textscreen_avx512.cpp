// AVX-512 (F/BW/VL) kernels of the text screen: RGB to luma, vertical window sums, their
// row prefix sums, the bright/dark classification, and the noise estimate's differences
// and counts, 32 or 64 pixels per step. Same arithmetic as the AVX2 kernels (16-bit
// lanes, unsigned saturation), with mask registers instead of movemask packing. Compiled
// with the avx512 backend's flags and only called after the dispatcher has seen them.
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

// Word indices of channel c (0 R, 1 G, 2 B) of 32 interleaved pixels held as 96 words
// w[0..95] in three registers: lanes whose word 3i+c lies in the first two registers
// (3i+c < 64) come from a two-register permute, the others from the third register.
struct ChannelIndex {
    __m512i first;    // 3i+c for the lanes of the first two registers
    __m512i third;    // 3i+c-64 for the others
    __mmask32 late;   // lanes taken from the third register
};

ChannelIndex channel_index(int c) {
    alignas(64) std::uint16_t a[32], b[32];
    __mmask32 late = 0;
    for (int i = 0; i < 32; ++i) {
        const int w = 3 * i + c;
        a[i] = static_cast<std::uint16_t>(w < 64 ? w : 0);
        b[i] = static_cast<std::uint16_t>(w < 64 ? 0 : w - 64);
        if (w >= 64) late |= __mmask32{1} << i;
    }
    return {_mm512_load_si512(a), _mm512_load_si512(b), late};
}

// 32 pixels per step: the 96 bytes are widened to words, each channel gathered with two
// word permutes, then 16-bit arithmetic, which cannot overflow (77*255 + 150*255 + 29*255
// + 128 = 65408), and the high bytes stored.
void luma_avx512(const std::uint8_t* rgb, std::size_t n, std::uint8_t* out) {
    static const ChannelIndex ci[3] = {channel_index(0), channel_index(1), channel_index(2)};
    const __m512i wr = _mm512_set1_epi16(77), wg = _mm512_set1_epi16(150);
    const __m512i wb = _mm512_set1_epi16(29), half = _mm512_set1_epi16(128);
    std::size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const std::uint8_t* s = rgb + 3 * i;
        const __m512i w0 =
            _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s)));
        const __m512i w1 =
            _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + 32)));
        const __m512i w2 =
            _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + 64)));
        auto channel = [&](const ChannelIndex& c) {
            const __m512i x = _mm512_permutex2var_epi16(w0, c.first, w1);
            return _mm512_mask_permutexvar_epi16(x, c.late, c.third, w2);
        };
        __m512i y = _mm512_add_epi16(_mm512_mullo_epi16(channel(ci[0]), wr),
                                     _mm512_mullo_epi16(channel(ci[1]), wg));
        y = _mm512_add_epi16(y, _mm512_add_epi16(_mm512_mullo_epi16(channel(ci[2]), wb), half));
        // The zero-masking form with every lane set is the plain vpmovwb (GCC 12 warns
        // about the plain intrinsic's undefined pass-through operand).
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                            _mm512_maskz_cvtepi16_epi8(~__mmask32{0}, _mm512_srli_epi16(y, 8)));
    }
    luma_scalar(rgb + 3 * i, n - i, out + i);
}

inline __m512i load_u8x32(const std::uint8_t* p) {
    return _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

void colsum16_avx512(std::uint16_t* v, const std::uint8_t* add, const std::uint8_t* sub,
                     std::size_t n) {
    std::size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512i x = _mm512_loadu_si512(v + i);
        if (add) x = _mm512_add_epi16(x, load_u8x32(add + i));
        if (sub) x = _mm512_sub_epi16(x, load_u8x32(sub + i));
        _mm512_storeu_si512(v + i, x);
    }
    for (; i < n; ++i)
        v[i] = static_cast<std::uint16_t>(v[i] + (add ? add[i] : 0) - (sub ? sub[i] : 0));
}

void prefix16_avx512(const std::uint16_t* v, std::size_t n, std::uint16_t* p) {
    const __m512i zero = _mm512_setzero_si512();
    const __m512i last = _mm512_set1_epi16(31);
    __m512i carry = _mm512_set1_epi16(static_cast<short>(p[0]));
    std::size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512i x = _mm512_loadu_si512(v + i);
        // Prefix sums within each 128-bit lane (three byte shifts), then each lane's
        // total broadcast over it and added to the lanes above it (qword rotations that
        // bring in zeros; the zero-masking forms with every lane set avoid GCC 12 warnings
        // about the plain intrinsics): the block's own prefix, independent of the carry.
        x = _mm512_add_epi16(x, _mm512_bslli_epi128(x, 2));
        x = _mm512_add_epi16(x, _mm512_bslli_epi128(x, 4));
        x = _mm512_add_epi16(x, _mm512_bslli_epi128(x, 8));
        __m512i t = _mm512_shufflehi_epi16(x, 0xFF);
        t = _mm512_maskz_unpackhi_epi64(0xFF, t, t);
        const __m512i one_up = _mm512_maskz_alignr_epi64(0xFF, t, zero, 6);
        const __m512i two_up = _mm512_maskz_alignr_epi64(0xFF, t, zero, 4);
        const __m512i three_up = _mm512_maskz_alignr_epi64(0xFF, t, zero, 2);
        const __m512i below = _mm512_add_epi16(one_up, _mm512_add_epi16(two_up, three_up));
        x = _mm512_add_epi16(x, below);
        _mm512_storeu_si512(p + i + 1, _mm512_add_epi16(x, carry));
        // The block total joins the carry off the store's dependency chain.
        carry = _mm512_add_epi16(carry, _mm512_permutexvar_epi16(last, x));
    }
    for (; i < n; ++i) p[i + 1] = static_cast<std::uint16_t>(p[i] + v[i]);
}

void classify16_avx512(const std::uint16_t* p, const std::uint8_t* px, std::size_t cols,
                       std::size_t r, std::uint32_t cnt, std::uint32_t tc,
                       std::uint64_t* bright, std::uint64_t* dark) {
    const __m512i vcnt = _mm512_set1_epi16(static_cast<short>(cnt));
    const __m512i vtc = _mm512_set1_epi16(static_cast<short>(tc));
    const std::uint16_t* hi_p = p + r + 1;
    const std::uint16_t* lo_p = p - static_cast<std::ptrdiff_t>(r);
    // 32 pixels' marks. Unsigned 16-bit: sums saturate at 65535, which is above every
    // v and s, so a saturated sum gives the exact answer (as in the AVX2 kernel).
    auto half = [&](std::size_t c, __mmask32& b, __mmask32& d) {
        const __m512i s =
            _mm512_sub_epi16(_mm512_loadu_si512(hi_p + c), _mm512_loadu_si512(lo_p + c));
        const __m512i v = _mm512_mullo_epi16(load_u8x32(px + c), vcnt);
        b = _mm512_cmpgt_epu16_mask(v, _mm512_adds_epu16(s, vtc));
        d = _mm512_cmpgt_epu16_mask(s, _mm512_adds_epu16(v, vtc));
    };
    std::size_t c = 0;
    for (; c + 64 <= cols; c += 64) {
        __mmask32 b0, d0, b1, d1;
        half(c, b0, d0);
        half(c + 32, b1, d1);
        bright[c / 64] = std::uint64_t{b0} | std::uint64_t{b1} << 32;
        dark[c / 64] = std::uint64_t{d0} | std::uint64_t{d1} << 32;
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

void absdiff_avx512(const std::uint8_t* row, std::size_t n, std::uint8_t* out) {
    std::size_t i = 0;
    for (; i + 65 <= n; i += 64) {
        const __m512i a = _mm512_loadu_si512(row + i);
        const __m512i b = _mm512_loadu_si512(row + i + 1);
        _mm512_storeu_si512(out + i,
                            _mm512_or_si512(_mm512_subs_epu8(a, b), _mm512_subs_epu8(b, a)));
    }
    for (; i + 1 < n; ++i)
        out[i] = static_cast<std::uint8_t>(row[i] > row[i + 1] ? row[i] - row[i + 1]
                                                               : row[i + 1] - row[i]);
}

std::size_t count_le_avx512(const std::uint8_t* d, std::size_t n, std::uint8_t k) {
    const __m512i vk = _mm512_set1_epi8(static_cast<char>(k));
    const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi8(1);
    __m512i total = zero;  // eight 64-bit counts
    std::size_t i = 0;
    while (i + 64 <= n) {
        // Byte counters gain at most one per step: flushed every 255 steps.
        __m512i bytes = zero;
        for (int s = 0; s < 255 && i + 64 <= n; ++s, i += 64) {
            const __mmask64 m = _mm512_cmple_epu8_mask(_mm512_loadu_si512(d + i), vk);
            bytes = _mm512_mask_add_epi8(bytes, m, bytes, one);
        }
        total = _mm512_add_epi64(total, _mm512_sad_epu8(bytes, zero));
    }
    alignas(64) std::uint64_t lanes[8];
    _mm512_store_si512(lanes, total);
    std::size_t c = 0;
    for (const std::uint64_t v : lanes) c += static_cast<std::size_t>(v);
    for (; i < n; ++i) c += d[i] <= k;
    return c;
}

}  // namespace

const TextScreenKernels kTextScreenAvx512 = {luma_avx512,       colsum16_avx512,
                                             prefix16_avx512,   classify16_avx512,
                                             absdiff_avx512,    count_le_avx512};

}  // namespace medveil::detail

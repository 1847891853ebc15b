// AVX2 classify loop of the text screen: eight window sums and pixels per step; compiled
// with -mavx2 -mbmi2 and only called after the dispatcher has seen AVX2 on the CPU.
#include <immintrin.h>

#include <cstring>

#include "medveil/textscreen.hpp"

namespace medveil::detail {

void classify_interior_avx2(const std::uint32_t* prefix, const std::uint8_t* row,
                            std::size_t c0, std::size_t c1, std::size_t r, std::int32_t cnt,
                            std::int32_t tc, std::uint8_t* bright, std::uint8_t* dark) {
    const __m256i vcnt = _mm256_set1_epi32(cnt);
    const __m256i vtc = _mm256_set1_epi32(tc);
    constexpr std::uint64_t kLowBits = 0x0101010101010101ULL;
    std::size_t c = c0;
    for (; c + 8 <= c1; c += 8) {
        // Modular 32-bit differences of the prefix sums are the exact window sums.
        const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(prefix + c + r + 1));
        const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(prefix + c - r));
        const __m256i sum = _mm256_sub_epi32(hi, lo);
        std::uint64_t px8;
        std::memcpy(&px8, row + c, 8);
        const __m256i px = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(px8)));
        const __m256i v = _mm256_mullo_epi32(px, vcnt);
        const __m256i b = _mm256_cmpgt_epi32(v, _mm256_add_epi32(sum, vtc));
        const __m256i d = _mm256_cmpgt_epi32(sum, _mm256_add_epi32(v, vtc));
        const auto bm = static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(b)));
        const auto dm = static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(d)));
        // One bit per pixel spread to one byte (0 or 1) per pixel.
        const std::uint64_t bb = _pdep_u64(bm, kLowBits);
        const std::uint64_t db = _pdep_u64(dm, kLowBits);
        std::memcpy(bright + c, &bb, 8);
        std::memcpy(dark + c, &db, 8);
    }
    if (c < c1) classify_interior_ref(prefix, row, c, c1, r, cnt, tc, bright, dark);
}

}  // namespace medveil::detail

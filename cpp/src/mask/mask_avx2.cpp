// AVX2 kernels: 32-byte stores, four per iteration; compiled with -mavx2 and only called
// after the dispatcher has seen AVX2 on the CPU.
#include <immintrin.h>

#include <cstring>

#include "medveil/mask.hpp"

namespace medveil::detail {
namespace {
constexpr std::size_t kInlineFillMax = 2048;
}  // namespace

void fill_avx2(std::uint8_t* dst, std::size_t nbytes, std::uint64_t pattern8, std::size_t itemsize) {
    // Long runs of zero and other byte-uniform values (the usual mask values) go to libc's
    // memset; short ones (label rows) are cheaper inline than through the call.
    if (nbytes > kInlineFillMax && byte_uniform(pattern8)) {
        std::memset(dst, static_cast<int>(pattern8 & 0xFFU), nbytes);
        return;
    }
    // Runs start on element boundaries and have whole elements, and 8, 16 and 32 are
    // multiples of any itemsize: a store at dst + nbytes - 32 (etc.) is in phase with the
    // pattern, so the tail is one overlapping store instead of a byte loop.
    (void)itemsize;
    if (nbytes >= 32) {
        const __m256i v = _mm256_set1_epi64x(static_cast<long long>(pattern8));
        std::size_t i = 0;
        if (nbytes >= 256) {
            // numpy only aligns to 16 bytes, so half of all 32-byte stores would straddle
            // two lines: one unaligned store, then on from the next 32-byte boundary (an
            // element boundary too, so still in phase).
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), v);
            i = 32U - (reinterpret_cast<std::uintptr_t>(dst) & 31U);
        }
        for (; i + 128 <= nbytes; i += 128) {
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), v);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i + 32), v);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i + 64), v);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i + 96), v);
        }
        for (; i + 32 <= nbytes; i += 32)
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), v);
        if (i < nbytes) _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + nbytes - 32), v);
    } else if (nbytes >= 16) {
        const __m128i v = _mm_set1_epi64x(static_cast<long long>(pattern8));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), v);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + nbytes - 16), v);
    } else if (nbytes >= 8) {
        std::memcpy(dst, &pattern8, 8);
        std::memcpy(dst + nbytes - 8, &pattern8, 8);
    } else {
        for (std::size_t i = 0; i < nbytes; ++i)
            dst[i] = static_cast<std::uint8_t>(pattern8 >> (8U * i));
    }
}

void fill_stream_avx2(std::uint8_t* dst, std::size_t nbytes, std::uint64_t pattern8,
                      std::size_t itemsize) {
    // Streaming stores need 32-byte aligned addresses: ordinary stores up to the first
    // 64-byte boundary (a whole line then goes out without being read first) and after the
    // last one.
    const auto addr = reinterpret_cast<std::uintptr_t>(dst);
    const std::size_t head = static_cast<std::size_t>((64U - (addr & 63U)) & 63U);
    if (nbytes < head + 128) {
        fill_avx2(dst, nbytes, pattern8, itemsize);
        return;
    }
    // The pattern is periodic in 8 bytes from dst; rotate it to stay in phase at dst+head.
    const unsigned shift = static_cast<unsigned>(head % 8) * 8U;
    const std::uint64_t phased =
        shift == 0 ? pattern8 : (pattern8 >> shift) | (pattern8 << (64U - shift));
    fill_avx2(dst, head, pattern8, itemsize);
    const __m256i v = _mm256_set1_epi64x(static_cast<long long>(phased));
    std::uint8_t* p = dst + head;
    const std::size_t body = (nbytes - head) & ~std::size_t{63};
    for (std::size_t i = 0; i < body; i += 64) {
        _mm256_stream_si256(reinterpret_cast<__m256i*>(p + i), v);
        _mm256_stream_si256(reinterpret_cast<__m256i*>(p + i + 32), v);
    }
    // Orders the weakly ordered streaming stores before anything the caller does next
    // (releasing the array to other threads included).
    _mm_sfence();
    fill_avx2(p + body, nbytes - head - body, phased, itemsize);
}

void fix_bits_avx2(void* data, std::size_t count, std::size_t itemsize, unsigned bits_stored,
                   bool is_signed) {
    auto* p = static_cast<std::uint8_t*>(data);
    const std::size_t nbytes = count * itemsize;
    std::size_t i = 0;
    if (itemsize == 2) {
        const auto m = static_cast<short>((1U << bits_stored) - 1U);
        const auto s = static_cast<short>(is_signed ? (1U << (bits_stored - 1)) : 0U);
        const __m256i vm = _mm256_set1_epi16(m), vs = _mm256_set1_epi16(s);
        for (; i + 64 <= nbytes; i += 64) {
            __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i));
            __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 32));
            a = _mm256_sub_epi16(_mm256_xor_si256(_mm256_and_si256(a, vm), vs), vs);
            b = _mm256_sub_epi16(_mm256_xor_si256(_mm256_and_si256(b, vm), vs), vs);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + i), a);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + i + 32), b);
        }
    } else {
        const auto m = static_cast<int>(bits_stored == 32 ? 0xFFFFFFFFU : (1U << bits_stored) - 1U);
        const auto s = static_cast<int>(is_signed ? (1U << (bits_stored - 1)) : 0U);
        const __m256i vm = _mm256_set1_epi32(m), vs = _mm256_set1_epi32(s);
        for (; i + 64 <= nbytes; i += 64) {
            __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i));
            __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 32));
            a = _mm256_sub_epi32(_mm256_xor_si256(_mm256_and_si256(a, vm), vs), vs);
            b = _mm256_sub_epi32(_mm256_xor_si256(_mm256_and_si256(b, vm), vs), vs);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + i), a);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + i + 32), b);
        }
    }
    if (i < nbytes) fix_bits_ref(p + i, (nbytes - i) / itemsize, itemsize, bits_stored, is_signed);
}

}  // namespace medveil::detail

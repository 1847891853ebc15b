// The AVX2 ChaCha20 eight-block step, shared by the raw cipher (chacha20_avx2.cpp) and
// the stitched ChaCha20-Poly1305 seal (aead_avx2.cpp). Private to the core: include it
// only from files compiled with -mavx2. Everything here has internal linkage (unnamed
// namespace), so no AVX2-compiled copy can be picked by the linker for a baseline caller.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace medveil::detail {
namespace {

inline std::uint32_t load32_le(const std::uint8_t* p) noexcept {
    std::uint32_t v;
    std::memcpy(&v, p, 4);  // x86 is little-endian, the only target of this file
    return v;
}

inline __m256i rotl16(__m256i v, __m256i shuf16) noexcept { return _mm256_shuffle_epi8(v, shuf16); }
inline __m256i rotl8(__m256i v, __m256i shuf8) noexcept { return _mm256_shuffle_epi8(v, shuf8); }
inline __m256i rotl12(__m256i v) noexcept {
    return _mm256_or_si256(_mm256_slli_epi32(v, 12), _mm256_srli_epi32(v, 20));
}
inline __m256i rotl7(__m256i v) noexcept {
    return _mm256_or_si256(_mm256_slli_epi32(v, 7), _mm256_srli_epi32(v, 25));
}

// Two quarter-rounds advanced step by step together. Pairing (rather than one quarter-
// round after another, or all four at once) gives the out-of-order core two independent
// chains while only eight of the sixteen state registers are live, so the compiler spills
// the idle ones instead of values on the critical path (measured ~1.3x over one-by-one).
#define MEDVEIL_QR8X2(a1, b1, c1, d1, a2, b2, c2, d2)                              \
    a1 = _mm256_add_epi32(a1, b1);                                                \
    a2 = _mm256_add_epi32(a2, b2);                                                \
    d1 = rotl16(_mm256_xor_si256(d1, a1), shuf16);                                \
    d2 = rotl16(_mm256_xor_si256(d2, a2), shuf16);                                \
    c1 = _mm256_add_epi32(c1, d1);                                                \
    c2 = _mm256_add_epi32(c2, d2);                                                \
    b1 = rotl12(_mm256_xor_si256(b1, c1));                                        \
    b2 = rotl12(_mm256_xor_si256(b2, c2));                                        \
    a1 = _mm256_add_epi32(a1, b1);                                                \
    a2 = _mm256_add_epi32(a2, b2);                                                \
    d1 = rotl8(_mm256_xor_si256(d1, a1), shuf8);                                  \
    d2 = rotl8(_mm256_xor_si256(d2, a2), shuf8);                                  \
    c1 = _mm256_add_epi32(c1, d1);                                                \
    c2 = _mm256_add_epi32(c2, d2);                                                \
    b1 = rotl7(_mm256_xor_si256(b1, c1));                                         \
    b2 = rotl7(_mm256_xor_si256(b2, c2))

// Transposes four word-vectors so that, afterwards, lane half h of vector i holds words
// [a..a+3] of block (i + 4h).
inline void transpose4(__m256i& a0, __m256i& a1, __m256i& a2, __m256i& a3) noexcept {
    const __m256i t0 = _mm256_unpacklo_epi32(a0, a1);
    const __m256i t1 = _mm256_unpackhi_epi32(a0, a1);
    const __m256i t2 = _mm256_unpacklo_epi32(a2, a3);
    const __m256i t3 = _mm256_unpackhi_epi32(a2, a3);
    a0 = _mm256_unpacklo_epi64(t0, t2);
    a1 = _mm256_unpackhi_epi64(t0, t2);
    a2 = _mm256_unpacklo_epi64(t1, t3);
    a3 = _mm256_unpackhi_epi64(t1, t3);
}

inline void emit32(const std::uint8_t* in, std::uint8_t* out, __m256i ks) noexcept {
    if (in != nullptr)
        ks = _mm256_xor_si256(ks, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), ks);
}

// Eight keystream blocks (512 bytes) for counters ctr..ctr+7 (mod 2^32), XORed into out
// (or stored, when in == nullptr). between(i) runs after double round i (0..9): the
// stitched AEAD puts scalar Poly1305 blocks there, which use the integer units while the
// rounds use the vector units, so the out-of-order core runs both at once.
template <class Between>
inline void blocks8(const __m256i s[16], std::uint32_t ctr, const std::uint8_t* in,
                    std::uint8_t* out, Between&& between) noexcept {
    const __m256i shuf16 = _mm256_setr_epi8(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13,
                                            2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
    const __m256i shuf8 = _mm256_setr_epi8(3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14,
                                           3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14);
    // Lane j counts block ctr + j; _mm256_add_epi32 wraps like the 32-bit counter.
    const __m256i c12 = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(ctr)),
                                         _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256i x0 = s[0], x1 = s[1], x2 = s[2], x3 = s[3], x4 = s[4], x5 = s[5], x6 = s[6],
            x7 = s[7], x8 = s[8], x9 = s[9], x10 = s[10], x11 = s[11], x12 = c12, x13 = s[13],
            x14 = s[14], x15 = s[15];
    for (int i = 0; i < 10; ++i) {
        MEDVEIL_QR8X2(x0, x4, x8, x12, x1, x5, x9, x13);  // columns
        MEDVEIL_QR8X2(x2, x6, x10, x14, x3, x7, x11, x15);
        MEDVEIL_QR8X2(x0, x5, x10, x15, x1, x6, x11, x12);  // diagonals
        MEDVEIL_QR8X2(x2, x7, x8, x13, x3, x4, x9, x14);
        between(i);
    }
    x0 = _mm256_add_epi32(x0, s[0]);
    x1 = _mm256_add_epi32(x1, s[1]);
    x2 = _mm256_add_epi32(x2, s[2]);
    x3 = _mm256_add_epi32(x3, s[3]);
    x4 = _mm256_add_epi32(x4, s[4]);
    x5 = _mm256_add_epi32(x5, s[5]);
    x6 = _mm256_add_epi32(x6, s[6]);
    x7 = _mm256_add_epi32(x7, s[7]);
    x8 = _mm256_add_epi32(x8, s[8]);
    x9 = _mm256_add_epi32(x9, s[9]);
    x10 = _mm256_add_epi32(x10, s[10]);
    x11 = _mm256_add_epi32(x11, s[11]);
    x12 = _mm256_add_epi32(x12, c12);
    x13 = _mm256_add_epi32(x13, s[13]);
    x14 = _mm256_add_epi32(x14, s[14]);
    x15 = _mm256_add_epi32(x15, s[15]);
    transpose4(x0, x1, x2, x3);
    transpose4(x4, x5, x6, x7);
    transpose4(x8, x9, x10, x11);
    transpose4(x12, x13, x14, x15);
    // Block j (< 4) is the low halves of x_j, x_{4+j}, x_{8+j}, x_{12+j}; block j + 4 the
    // high halves.
    auto block = [&](int j, __m256i a, __m256i b, __m256i c, __m256i d) {
        const std::uint8_t* bi = in != nullptr ? in + 64 * j : nullptr;
        const std::uint8_t* bi4 = in != nullptr ? in + 64 * (j + 4) : nullptr;
        emit32(bi, out + 64 * j, _mm256_permute2x128_si256(a, b, 0x20));
        emit32(bi != nullptr ? bi + 32 : nullptr, out + 64 * j + 32,
               _mm256_permute2x128_si256(c, d, 0x20));
        emit32(bi4, out + 64 * (j + 4), _mm256_permute2x128_si256(a, b, 0x31));
        emit32(bi4 != nullptr ? bi4 + 32 : nullptr, out + 64 * (j + 4) + 32,
               _mm256_permute2x128_si256(c, d, 0x31));
    };
    block(0, x0, x4, x8, x12);
    block(1, x1, x5, x9, x13);
    block(2, x2, x6, x10, x14);
    block(3, x3, x7, x11, x15);
}
#undef MEDVEIL_QR8X2

// The state rows of blocks8 for (key, nonce); row 12 (the counter) is built per step.
inline void chacha20_avx2_state(const std::uint8_t key[32], const std::uint8_t nonce[12],
                                __m256i s[16]) noexcept {
    s[0] = _mm256_set1_epi32(0x61707865);
    s[1] = _mm256_set1_epi32(0x3320646e);
    s[2] = _mm256_set1_epi32(0x79622d32);
    s[3] = _mm256_set1_epi32(0x6b206574);
    for (int i = 0; i < 8; ++i)
        s[4 + i] = _mm256_set1_epi32(static_cast<int>(load32_le(key + 4 * i)));
    s[12] = _mm256_setzero_si256();
    for (int i = 0; i < 3; ++i)
        s[13 + i] = _mm256_set1_epi32(static_cast<int>(load32_le(nonce + 4 * i)));
}

}  // namespace
}  // namespace medveil::detail

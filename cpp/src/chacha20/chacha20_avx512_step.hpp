// The AVX-512 ChaCha20 sixteen-block step, shared by the raw cipher (chacha20_avx512.cpp)
// and the ChaCha20-Poly1305 passes (aead_avx512.cpp). Private to the core: include it
// only from files compiled with the AVX-512 flags. Internal linkage (unnamed namespace),
// so no AVX-512 copy can be picked by the linker for a baseline caller.
#pragma once

// GCC 12 warns that the _mm512_undefined_*() inside its own intrinsics (rol, shifts,
// lane shuffles) "may be used uninitialized" (GCC bug 105593): a false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace medveil::detail {
namespace {

inline std::uint32_t load32_le_512(const std::uint8_t* p) noexcept {
    std::uint32_t v;
    std::memcpy(&v, p, 4);  // x86 is little-endian, the only target of this file
    return v;
}

// One quarter-round on four columns (or diagonals) at once, written step by step across
// the four so that the core always has four independent chains in flight.
#define MEDVEIL_QR16X4(a0, b0, c0, d0, a1, b1, c1, d1, a2, b2, c2, d2, a3, b3, c3, d3) \
    a0 = _mm512_add_epi32(a0, b0);                                                    \
    a1 = _mm512_add_epi32(a1, b1);                                                    \
    a2 = _mm512_add_epi32(a2, b2);                                                    \
    a3 = _mm512_add_epi32(a3, b3);                                                    \
    d0 = _mm512_rol_epi32(_mm512_xor_si512(d0, a0), 16);                              \
    d1 = _mm512_rol_epi32(_mm512_xor_si512(d1, a1), 16);                              \
    d2 = _mm512_rol_epi32(_mm512_xor_si512(d2, a2), 16);                              \
    d3 = _mm512_rol_epi32(_mm512_xor_si512(d3, a3), 16);                              \
    c0 = _mm512_add_epi32(c0, d0);                                                    \
    c1 = _mm512_add_epi32(c1, d1);                                                    \
    c2 = _mm512_add_epi32(c2, d2);                                                    \
    c3 = _mm512_add_epi32(c3, d3);                                                    \
    b0 = _mm512_rol_epi32(_mm512_xor_si512(b0, c0), 12);                              \
    b1 = _mm512_rol_epi32(_mm512_xor_si512(b1, c1), 12);                              \
    b2 = _mm512_rol_epi32(_mm512_xor_si512(b2, c2), 12);                              \
    b3 = _mm512_rol_epi32(_mm512_xor_si512(b3, c3), 12);                              \
    a0 = _mm512_add_epi32(a0, b0);                                                    \
    a1 = _mm512_add_epi32(a1, b1);                                                    \
    a2 = _mm512_add_epi32(a2, b2);                                                    \
    a3 = _mm512_add_epi32(a3, b3);                                                    \
    d0 = _mm512_rol_epi32(_mm512_xor_si512(d0, a0), 8);                               \
    d1 = _mm512_rol_epi32(_mm512_xor_si512(d1, a1), 8);                               \
    d2 = _mm512_rol_epi32(_mm512_xor_si512(d2, a2), 8);                               \
    d3 = _mm512_rol_epi32(_mm512_xor_si512(d3, a3), 8);                               \
    c0 = _mm512_add_epi32(c0, d0);                                                    \
    c1 = _mm512_add_epi32(c1, d1);                                                    \
    c2 = _mm512_add_epi32(c2, d2);                                                    \
    c3 = _mm512_add_epi32(c3, d3);                                                    \
    b0 = _mm512_rol_epi32(_mm512_xor_si512(b0, c0), 7);                               \
    b1 = _mm512_rol_epi32(_mm512_xor_si512(b1, c1), 7);                               \
    b2 = _mm512_rol_epi32(_mm512_xor_si512(b2, c2), 7);                               \
    b3 = _mm512_rol_epi32(_mm512_xor_si512(b3, c3), 7)

// Transposes 32-bit words inside each 128-bit lane: afterwards lane L of vector i holds
// the four words (of a0..a3's row) of block 4L + i.
inline void transpose4x512(__m512i& a0, __m512i& a1, __m512i& a2, __m512i& a3) noexcept {
    const __m512i t0 = _mm512_unpacklo_epi32(a0, a1);
    const __m512i t1 = _mm512_unpackhi_epi32(a0, a1);
    const __m512i t2 = _mm512_unpacklo_epi32(a2, a3);
    const __m512i t3 = _mm512_unpackhi_epi32(a2, a3);
    a0 = _mm512_unpacklo_epi64(t0, t2);
    a1 = _mm512_unpackhi_epi64(t0, t2);
    a2 = _mm512_unpacklo_epi64(t1, t3);
    a3 = _mm512_unpackhi_epi64(t1, t3);
}

inline void emit64(const std::uint8_t* in, std::uint8_t* out, __m512i ks) noexcept {
    if (in != nullptr) ks = _mm512_xor_si512(ks, _mm512_loadu_si512(in));
    _mm512_storeu_si512(out, ks);
}

// Blocks 4L + i (L = 0..3) from a_g = words 4g..4g+3 of those blocks in lane L: a 4x4
// transpose of 128-bit lanes gives each block's 64 bytes in one register.
inline void emit_blocks(const std::uint8_t* in, std::uint8_t* out, int i, __m512i a0, __m512i a1,
                        __m512i a2, __m512i a3) noexcept {
    const __m512i t0 = _mm512_shuffle_i32x4(a0, a1, 0x44);  // a0.0 a0.1 a1.0 a1.1
    const __m512i t1 = _mm512_shuffle_i32x4(a0, a1, 0xEE);  // a0.2 a0.3 a1.2 a1.3
    const __m512i t2 = _mm512_shuffle_i32x4(a2, a3, 0x44);
    const __m512i t3 = _mm512_shuffle_i32x4(a2, a3, 0xEE);
    const __m512i b[4] = {_mm512_shuffle_i32x4(t0, t2, 0x88), _mm512_shuffle_i32x4(t0, t2, 0xDD),
                          _mm512_shuffle_i32x4(t1, t3, 0x88), _mm512_shuffle_i32x4(t1, t3, 0xDD)};
    for (int lane = 0; lane < 4; ++lane) {
        const int blk = 4 * lane + i;
        emit64(in != nullptr ? in + 64 * blk : nullptr, out + 64 * blk, b[lane]);
    }
}

// Sixteen keystream blocks (1024 bytes) for counters ctr..ctr+15 (mod 2^32), XORed into
// out (or stored, when in == nullptr). in == out is allowed: each 64-byte block of in is
// loaded before the same block of out is stored. between(i) runs after double round i
// (0..9): the AEAD puts one eight-lane Poly1305 group there, so the IFMA multiplies and
// their carry chain overlap the rounds instead of running after them.
template <class Between>
inline void blocks16(const __m512i s[16], std::uint32_t ctr, const std::uint8_t* in,
                     std::uint8_t* out, Between&& between) noexcept {
    // Lane j counts block ctr + j; _mm512_add_epi32 wraps like the 32-bit counter.
    const __m512i c12 = _mm512_add_epi32(
        _mm512_set1_epi32(static_cast<int>(ctr)),
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    __m512i x0 = s[0], x1 = s[1], x2 = s[2], x3 = s[3], x4 = s[4], x5 = s[5], x6 = s[6],
            x7 = s[7], x8 = s[8], x9 = s[9], x10 = s[10], x11 = s[11], x12 = c12, x13 = s[13],
            x14 = s[14], x15 = s[15];
    for (int r = 0; r < 10; ++r) {
        MEDVEIL_QR16X4(x0, x4, x8, x12, x1, x5, x9, x13, x2, x6, x10, x14, x3, x7, x11, x15);
        MEDVEIL_QR16X4(x0, x5, x10, x15, x1, x6, x11, x12, x2, x7, x8, x13, x3, x4, x9, x14);
        between(r);
    }
    x0 = _mm512_add_epi32(x0, s[0]);
    x1 = _mm512_add_epi32(x1, s[1]);
    x2 = _mm512_add_epi32(x2, s[2]);
    x3 = _mm512_add_epi32(x3, s[3]);
    x4 = _mm512_add_epi32(x4, s[4]);
    x5 = _mm512_add_epi32(x5, s[5]);
    x6 = _mm512_add_epi32(x6, s[6]);
    x7 = _mm512_add_epi32(x7, s[7]);
    x8 = _mm512_add_epi32(x8, s[8]);
    x9 = _mm512_add_epi32(x9, s[9]);
    x10 = _mm512_add_epi32(x10, s[10]);
    x11 = _mm512_add_epi32(x11, s[11]);
    x12 = _mm512_add_epi32(x12, c12);
    x13 = _mm512_add_epi32(x13, s[13]);
    x14 = _mm512_add_epi32(x14, s[14]);
    x15 = _mm512_add_epi32(x15, s[15]);
    transpose4x512(x0, x1, x2, x3);
    transpose4x512(x4, x5, x6, x7);
    transpose4x512(x8, x9, x10, x11);
    transpose4x512(x12, x13, x14, x15);
    emit_blocks(in, out, 0, x0, x4, x8, x12);
    emit_blocks(in, out, 1, x1, x5, x9, x13);
    emit_blocks(in, out, 2, x2, x6, x10, x14);
    emit_blocks(in, out, 3, x3, x7, x11, x15);
}
#undef MEDVEIL_QR16X4

// The state rows of blocks16 for (key, nonce); row 12 (the counter) is built per step.
inline void chacha20_avx512_state(const std::uint8_t key[32], const std::uint8_t nonce[12],
                                  __m512i s[16]) noexcept {
    s[0] = _mm512_set1_epi32(0x61707865);
    s[1] = _mm512_set1_epi32(0x3320646e);
    s[2] = _mm512_set1_epi32(0x79622d32);
    s[3] = _mm512_set1_epi32(0x6b206574);
    for (int i = 0; i < 8; ++i)
        s[4 + i] = _mm512_set1_epi32(static_cast<int>(load32_le_512(key + 4 * i)));
    s[12] = _mm512_setzero_si512();
    for (int i = 0; i < 3; ++i)
        s[13 + i] = _mm512_set1_epi32(static_cast<int>(load32_le_512(nonce + 4 * i)));
}

}  // namespace
}  // namespace medveil::detail

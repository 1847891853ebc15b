// The four-lane radix-2^26 AVX2 Poly1305 arithmetic, shared by poly1305_avx2.cpp and the
// stitched ChaCha20-Poly1305 seal (aead_avx2.cpp); see poly1305_avx2.cpp for the method.
// Private to the core: include it only from files compiled with -mavx2. Everything has
// internal linkage (unnamed namespace).
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "medveil/chacha20.hpp"
#include "medveil/poly1305.hpp"

namespace medveil::detail {
namespace {

__extension__ typedef unsigned __int128 u128;  // GCC/Clang extension, as in the scalar code
constexpr std::uint64_t kMask26 = (1U << 26) - 1;

// 130-bit value in radix 2^64 (h2 small) -> five 26-bit limbs (the top one may exceed).
void to26(std::uint64_t h0, std::uint64_t h1, std::uint64_t h2, std::uint64_t l[5]) noexcept {
    l[0] = h0 & kMask26;
    l[1] = (h0 >> 26) & kMask26;
    l[2] = ((h0 >> 52) | (h1 << 12)) & kMask26;
    l[3] = (h1 >> 14) & kMask26;
    l[4] = (h1 >> 40) | (h2 << 24);
}

// Carries limbs so that l0..l3 < 2^26 and bits at and above 2^130 are folded times 5.
void carry26(std::uint64_t l[5]) noexcept {
    for (int pass = 0; pass < 2; ++pass) {
        std::uint64_t c = 0;
        for (int i = 0; i < 4; ++i) {
            l[i] += c;
            c = l[i] >> 26;
            l[i] &= kMask26;
        }
        l[4] += c;
        c = l[4] >> 26;
        l[4] &= kMask26;
        l[0] += c * 5;
    }
    // l0 may again exceed 2^26 by a carry's worth; pass it on once more.
    const std::uint64_t c = l[0] >> 26;
    l[0] &= kMask26;
    l[1] += c;
}

// out = a * b mod 2^130 - 5, in radix 2^26 (scalar; used for the powers of r only).
void mul26(const std::uint64_t a[5], const std::uint64_t b[5], std::uint64_t out[5]) noexcept {
    std::uint64_t b5[5];
    for (int i = 0; i < 5; ++i) b5[i] = b[i] * 5;
    std::uint64_t d[5];
    for (int k = 0; k < 5; ++k) {
        std::uint64_t s = 0;
        for (int i = 0; i < 5; ++i) {
            const int j = k - i;
            s += a[i] * (j >= 0 ? b[j] : b5[j + 5]);
        }
        d[k] = s;
    }
    carry26(d);
    std::memcpy(out, d, sizeof d);
    secure_wipe(b5, sizeof b5);
    secure_wipe(d, sizeof d);
}

void make_powers(Poly1305& c) noexcept {
    std::uint64_t p[5][5];
    to26(c.r0, c.r1, 0, p[0]);
    mul26(p[0], p[0], p[1]);
    mul26(p[1], p[0], p[2]);
    mul26(p[2], p[0], p[3]);
    mul26(p[3], p[3], p[4]);  // r^8 for the two interleaved chains
    for (int i = 0; i < 5; ++i)
        for (int j = 0; j < 5; ++j) c.pow26[i][j] = static_cast<std::uint32_t>(p[i][j]);
    c.have_pow26 = true;
    secure_wipe(p, sizeof p);
}

struct Vec5 {
    __m256i v[5];
};

// d = h * r on every lane, where r and 5r are per-lane limb vectors; then a lazy carry.
// Written out term by term: with loops over the limbs GCC kept index arithmetic and
// memory round trips in the hot loop (measured 1.3x slower).
inline Vec5 mulmod(const Vec5& h, const __m256i r[5], const __m256i r5[5]) noexcept {
    const __m256i mask = _mm256_set1_epi64x(static_cast<long long>(kMask26));
    const __m256i h0 = h.v[0], h1 = h.v[1], h2 = h.v[2], h3 = h.v[3], h4 = h.v[4];
#define MEDVEIL_MUL(a, b) _mm256_mul_epu32(a, b)
#define MEDVEIL_ADD(a, b) _mm256_add_epi64(a, b)
    __m256i d0 = MEDVEIL_ADD(MEDVEIL_ADD(MEDVEIL_MUL(h0, r[0]), MEDVEIL_MUL(h1, r5[4])),
                             MEDVEIL_ADD(MEDVEIL_ADD(MEDVEIL_MUL(h2, r5[3]), MEDVEIL_MUL(h3, r5[2])),
                                         MEDVEIL_MUL(h4, r5[1])));
    __m256i d1 = MEDVEIL_ADD(MEDVEIL_ADD(MEDVEIL_MUL(h0, r[1]), MEDVEIL_MUL(h1, r[0])),
                             MEDVEIL_ADD(MEDVEIL_ADD(MEDVEIL_MUL(h2, r5[4]), MEDVEIL_MUL(h3, r5[3])),
                                         MEDVEIL_MUL(h4, r5[2])));
    __m256i d2 = MEDVEIL_ADD(MEDVEIL_ADD(MEDVEIL_MUL(h0, r[2]), MEDVEIL_MUL(h1, r[1])),
                             MEDVEIL_ADD(MEDVEIL_ADD(MEDVEIL_MUL(h2, r[0]), MEDVEIL_MUL(h3, r5[4])),
                                         MEDVEIL_MUL(h4, r5[3])));
    __m256i d3 = MEDVEIL_ADD(MEDVEIL_ADD(MEDVEIL_MUL(h0, r[3]), MEDVEIL_MUL(h1, r[2])),
                             MEDVEIL_ADD(MEDVEIL_ADD(MEDVEIL_MUL(h2, r[1]), MEDVEIL_MUL(h3, r[0])),
                                         MEDVEIL_MUL(h4, r5[4])));
    __m256i d4 = MEDVEIL_ADD(MEDVEIL_ADD(MEDVEIL_MUL(h0, r[4]), MEDVEIL_MUL(h1, r[3])),
                             MEDVEIL_ADD(MEDVEIL_ADD(MEDVEIL_MUL(h2, r[2]), MEDVEIL_MUL(h3, r[1])),
                                         MEDVEIL_MUL(h4, r[0])));
#undef MEDVEIL_MUL
#undef MEDVEIL_ADD
    // Two carry chains side by side (d0 -> d1 -> d2 -> d3 and d3 -> d4 -> 5 * d0 -> d1)
    // halve the latency of the serial chain; every limb ends below 2^26 plus a carry.
    __m256i c0 = _mm256_srli_epi64(d0, 26), c3 = _mm256_srli_epi64(d3, 26);
    d0 = _mm256_and_si256(d0, mask);
    d3 = _mm256_and_si256(d3, mask);
    d1 = _mm256_add_epi64(d1, c0);
    d4 = _mm256_add_epi64(d4, c3);
    __m256i c1 = _mm256_srli_epi64(d1, 26), c4 = _mm256_srli_epi64(d4, 26);
    d1 = _mm256_and_si256(d1, mask);
    d4 = _mm256_and_si256(d4, mask);
    d2 = _mm256_add_epi64(d2, c1);
    d0 = _mm256_add_epi64(d0, _mm256_add_epi64(c4, _mm256_slli_epi64(c4, 2)));
    __m256i c2 = _mm256_srli_epi64(d2, 26);
    c0 = _mm256_srli_epi64(d0, 26);
    d2 = _mm256_and_si256(d2, mask);
    d0 = _mm256_and_si256(d0, mask);
    d3 = _mm256_add_epi64(d3, c2);
    d1 = _mm256_add_epi64(d1, c0);
    c3 = _mm256_srli_epi64(d3, 26);
    d3 = _mm256_and_si256(d3, mask);
    d4 = _mm256_add_epi64(d4, c3);
    return Vec5{{d0, d1, d2, d3, d4}};
}

// Four message blocks as limbs, with the 2^128 bit. Lane order is (0, 2, 1, 3): the
// 64-bit unpacks work within 128-bit halves; the final powers follow the same order.
inline Vec5 load4(const std::uint8_t* m) noexcept {
    const __m256i mask = _mm256_set1_epi64x(static_cast<long long>(kMask26));
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(m));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(m + 32));
    const __m256i lo = _mm256_unpacklo_epi64(a, b);
    const __m256i hi = _mm256_unpackhi_epi64(a, b);
    Vec5 out;
    out.v[0] = _mm256_and_si256(lo, mask);
    out.v[1] = _mm256_and_si256(_mm256_srli_epi64(lo, 26), mask);
    out.v[2] = _mm256_and_si256(_mm256_or_si256(_mm256_srli_epi64(lo, 52), _mm256_slli_epi64(hi, 12)),
                                mask);
    out.v[3] = _mm256_and_si256(_mm256_srli_epi64(hi, 14), mask);
    out.v[4] = _mm256_or_si256(_mm256_srli_epi64(hi, 40), _mm256_set1_epi64x(1LL << 24));
    return out;
}

// The lane accumulator for a run starting at msg: its first four blocks, with the
// running h of the scalar code added to lane 0.
inline Vec5 lanes_start(const Poly1305& ctx, const std::uint8_t* msg) noexcept {
    std::uint64_t h[5];
    to26(ctx.h0, ctx.h1, ctx.h2, h);
    Vec5 acc = load4(msg);
    for (int j = 0; j < 5; ++j)
        acc.v[j] = _mm256_add_epi64(acc.v[j], _mm256_setr_epi64x(static_cast<long long>(h[j]), 0, 0, 0));
    secure_wipe(h, sizeof h);
    return acc;
}

// acc = acc * r^4 + (the four blocks at msg), on every lane.
inline void lanes_absorb(Vec5& acc, const std::uint8_t* msg, const __m256i r4[5],
                         const __m256i r4x5[5]) noexcept {
    acc = mulmod(acc, r4, r4x5);
    const Vec5 m = load4(msg);
    for (int j = 0; j < 5; ++j) acc.v[j] = _mm256_add_epi64(acc.v[j], m.v[j]);
}

// Per-lane final powers in the (0, 2, 1, 3) lane order of load4: lane k needs r^(4-k).
inline void lanes_final_powers(const Poly1305& ctx, __m256i rl[5], __m256i rlx5[5]) noexcept {
    for (int j = 0; j < 5; ++j) {
        rl[j] = _mm256_setr_epi64x(ctx.pow26[3][j], ctx.pow26[1][j], ctx.pow26[2][j],
                                   ctx.pow26[0][j]);
        rlx5[j] = _mm256_setr_epi64x(5LL * ctx.pow26[3][j], 5LL * ctx.pow26[1][j],
                                     5LL * ctx.pow26[2][j], 5LL * ctx.pow26[0][j]);
    }
}

// Multiplies lane k by r^(4-k), sums the lanes and leaves the result in ctx's radix-2^64
// h for the scalar code; wipes its temporaries.
inline void lanes_finish(Poly1305& ctx, Vec5 acc) noexcept {
    __m256i rl[5], rlx5[5];
    lanes_final_powers(ctx, rl, rlx5);
    acc = mulmod(acc, rl, rlx5);
    alignas(32) std::uint64_t lanes[4];
    std::uint64_t h[5];
    for (int j = 0; j < 5; ++j) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc.v[j]);
        h[j] = lanes[0] + lanes[1] + lanes[2] + lanes[3];
    }
    carry26(h);
    // l0..l3 < 2^26 and the low 24 bits of l4 make at most 2^128 - 1: no overflow.
    u128 lo = static_cast<u128>(h[0]) | (static_cast<u128>(h[1]) << 26) |
              (static_cast<u128>(h[2]) << 52) | (static_cast<u128>(h[3]) << 78) |
              (static_cast<u128>(h[4] & 0xFFFFFF) << 104);
    ctx.h0 = static_cast<std::uint64_t>(lo);
    ctx.h1 = static_cast<std::uint64_t>(lo >> 64);
    ctx.h2 = h[4] >> 24;
    secure_wipe(h, sizeof h);
    secure_wipe(lanes, sizeof lanes);
    secure_wipe(&lo, sizeof lo);
    secure_wipe(&acc, sizeof acc);
    secure_wipe(rl, sizeof rl);
    secure_wipe(rlx5, sizeof rlx5);
}

// Broadcast r^(4 << which) and 5 times it (which = 0: r^4, 1: r^8).
inline void lanes_broadcast(const Poly1305& ctx, int which, __m256i r[5], __m256i rx5[5]) noexcept {
    for (int j = 0; j < 5; ++j) {
        r[j] = _mm256_set1_epi64x(ctx.pow26[3 + which][j]);
        rx5[j] = _mm256_set1_epi64x(5LL * ctx.pow26[3 + which][j]);
    }
}

}  // namespace
}  // namespace medveil::detail

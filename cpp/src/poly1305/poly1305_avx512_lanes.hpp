// The eight-lane AVX-512 IFMA Poly1305 arithmetic, shared by poly1305_avx512.cpp and the
// ChaCha20-Poly1305 passes (aead_avx512.cpp); see poly1305_avx512.cpp for the method.
// Private to the core: include it only from files compiled with the AVX-512 flags.
// Internal linkage (unnamed namespace).
#pragma once

// GCC 12 warns that the _mm512_undefined_*() inside its own intrinsics (rol, shifts,
// lane shuffles) "may be used uninitialized" (GCC bug 105593): a false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <immintrin.h>

#include <cstdint>

#include "medveil/chacha20.hpp"
#include "medveil/poly1305.hpp"

namespace medveil::detail {
namespace {

__extension__ typedef unsigned __int128 u128_44;  // GCC/Clang extension, as in the scalar code
constexpr std::uint64_t kMask44 = (std::uint64_t(1) << 44) - 1;
constexpr std::uint64_t kMask42 = (std::uint64_t(1) << 42) - 1;

// a * b mod 2^130 - 5 in radix 2^44 (scalar; for the powers of r only). Limbs in: a0, a1
// < 2^45, a2 < 2^43; out: l0, l1 < 2^44, l2 < 2^42 + 2^2.
inline void mul44(const std::uint64_t a[3], const std::uint64_t b[3], std::uint64_t out[3]) noexcept {
    // 2^132 = 4 * 2^130 = 20 (mod p): limbs whose exponents add to 132 or more fold by 20.
    const std::uint64_t s1 = b[1] * 20, s2 = b[2] * 20;
    const u128_44 d0 = static_cast<u128_44>(a[0]) * b[0] + static_cast<u128_44>(a[1]) * s2 +
                       static_cast<u128_44>(a[2]) * s1;
    u128_44 d1 = static_cast<u128_44>(a[0]) * b[1] + static_cast<u128_44>(a[1]) * b[0] +
                 static_cast<u128_44>(a[2]) * s2;
    u128_44 d2 = static_cast<u128_44>(a[0]) * b[2] + static_cast<u128_44>(a[1]) * b[1] +
                 static_cast<u128_44>(a[2]) * b[0];
    std::uint64_t l0 = static_cast<std::uint64_t>(d0) & kMask44;
    d1 += d0 >> 44;
    std::uint64_t l1 = static_cast<std::uint64_t>(d1) & kMask44;
    d2 += d1 >> 44;
    std::uint64_t l2 = static_cast<std::uint64_t>(d2) & kMask42;
    const std::uint64_t c = static_cast<std::uint64_t>(d2 >> 42);  // < 2^60
    l0 += c * 5;
    l1 += l0 >> 44;
    l0 &= kMask44;
    l2 += l1 >> 44;
    l1 &= kMask44;
    out[0] = l0;
    out[1] = l1;
    out[2] = l2;
}

inline void make_powers44(Poly1305& c) noexcept {
    const std::uint64_t r[3] = {c.r0 & kMask44, ((c.r0 >> 44) | (c.r1 << 20)) & kMask44,
                                c.r1 >> 24};
    c.pow44[0][0] = r[0];
    c.pow44[0][1] = r[1];
    c.pow44[0][2] = r[2];
    for (int i = 1; i < 8; ++i) mul44(c.pow44[i - 1], r, c.pow44[i]);
    c.have_pow44 = true;
}

struct Vec3 {
    __m512i v[3];
};

// A multiplier: r's limbs and 20 times r1, r2, one value per lane.
struct Mul3 {
    __m512i r0, r1, r2, s1, s2;
};

inline Mul3 mul3_broadcast(const std::uint64_t p[3]) noexcept {
    return Mul3{_mm512_set1_epi64(static_cast<long long>(p[0])),
                _mm512_set1_epi64(static_cast<long long>(p[1])),
                _mm512_set1_epi64(static_cast<long long>(p[2])),
                _mm512_set1_epi64(static_cast<long long>(p[1] * 20)),
                _mm512_set1_epi64(static_cast<long long>(p[2] * 20))};
}

// h * r on every lane, carried so that limbs 0 and 1 end below 2^44 + 2^10 and limb 2
// below 2^42 + 2^10. vpmadd52luq/huq add the low / high 52 bits of the 104-bit product
// of the low 52 bits of their operands: h limbs stay below 2^46 and r, 20 r below 2^49.
inline Vec3 mul_ifma(const Vec3& h, const Mul3& m) noexcept {
    const __m512i z = _mm512_setzero_si512();
    const __m512i h0 = h.v[0], h1 = h.v[1], h2 = h.v[2];
    __m512i d0l = _mm512_madd52lo_epu64(z, h0, m.r0);
    __m512i d0h = _mm512_madd52hi_epu64(z, h0, m.r0);
    __m512i d1l = _mm512_madd52lo_epu64(z, h0, m.r1);
    __m512i d1h = _mm512_madd52hi_epu64(z, h0, m.r1);
    __m512i d2l = _mm512_madd52lo_epu64(z, h0, m.r2);
    __m512i d2h = _mm512_madd52hi_epu64(z, h0, m.r2);
    d0l = _mm512_madd52lo_epu64(d0l, h1, m.s2);
    d0h = _mm512_madd52hi_epu64(d0h, h1, m.s2);
    d1l = _mm512_madd52lo_epu64(d1l, h1, m.r0);
    d1h = _mm512_madd52hi_epu64(d1h, h1, m.r0);
    d2l = _mm512_madd52lo_epu64(d2l, h1, m.r1);
    d2h = _mm512_madd52hi_epu64(d2h, h1, m.r1);
    d0l = _mm512_madd52lo_epu64(d0l, h2, m.s1);
    d0h = _mm512_madd52hi_epu64(d0h, h2, m.s1);
    d1l = _mm512_madd52lo_epu64(d1l, h2, m.s2);
    d1h = _mm512_madd52hi_epu64(d1h, h2, m.s2);
    d2l = _mm512_madd52lo_epu64(d2l, h2, m.r0);
    d2h = _mm512_madd52hi_epu64(d2h, h2, m.r0);
    // The high halves sit 52 bits above their low halves, i.e. 8 bits into the next limb
    // (44 + 8); d2h is at 2^140 = 2^130 * 2^10, folded back times 5.
    const __m512i m44 = _mm512_set1_epi64(static_cast<long long>(kMask44));
    const __m512i m42 = _mm512_set1_epi64(static_cast<long long>(kMask42));
    d1l = _mm512_add_epi64(d1l, _mm512_slli_epi64(d0h, 8));
    d2l = _mm512_add_epi64(d2l, _mm512_slli_epi64(d1h, 8));
    d1l = _mm512_add_epi64(d1l, _mm512_srli_epi64(d0l, 44));
    d0l = _mm512_and_si512(d0l, m44);
    d2l = _mm512_add_epi64(d2l, _mm512_srli_epi64(d1l, 44));
    d1l = _mm512_and_si512(d1l, m44);
    // c = everything at and above 2^130, then c * 5 = c + 4c into limb 0.
    __m512i c = _mm512_add_epi64(_mm512_srli_epi64(d2l, 42), _mm512_slli_epi64(d2h, 10));
    d2l = _mm512_and_si512(d2l, m42);
    d0l = _mm512_add_epi64(d0l, _mm512_add_epi64(c, _mm512_slli_epi64(c, 2)));
    d1l = _mm512_add_epi64(d1l, _mm512_srli_epi64(d0l, 44));
    d0l = _mm512_and_si512(d0l, m44);
    return Vec3{{d0l, d1l, d2l}};
}

// Eight message blocks as limbs with the 2^128 bit, block k in lane k.
inline Vec3 load8(const std::uint8_t* m) noexcept {
    const __m512i a = _mm512_loadu_si512(m);
    const __m512i b = _mm512_loadu_si512(m + 64);
    const __m512i lo = _mm512_permutex2var_epi64(a, _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14), b);
    const __m512i hi = _mm512_permutex2var_epi64(a, _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15), b);
    const __m512i m44 = _mm512_set1_epi64(static_cast<long long>(kMask44));
    return Vec3{{_mm512_and_si512(lo, m44),
                 _mm512_and_si512(_mm512_or_si512(_mm512_srli_epi64(lo, 44), _mm512_slli_epi64(hi, 20)),
                                  m44),
                 _mm512_or_si512(_mm512_srli_epi64(hi, 24), _mm512_set1_epi64(1LL << 40))}};
}

inline void add3(Vec3& acc, const Vec3& m) noexcept {
    for (int j = 0; j < 3; ++j) acc.v[j] = _mm512_add_epi64(acc.v[j], m.v[j]);
}

// The lane accumulator for a run starting at msg: its first eight blocks, with the
// running h of the scalar code (radix 2^64, h2 small) added to lane 0.
inline Vec3 lanes8_start(const Poly1305& ctx, const std::uint8_t* msg) noexcept {
    const std::uint64_t h0 = ctx.h0 & kMask44;
    const std::uint64_t h1 = ((ctx.h0 >> 44) | (ctx.h1 << 20)) & kMask44;
    const std::uint64_t h2 = (ctx.h1 >> 24) | (ctx.h2 << 40);  // < 2^43
    Vec3 acc = load8(msg);
    const __mmask8 lane0 = 1;
    acc.v[0] = _mm512_mask_add_epi64(acc.v[0], lane0, acc.v[0], _mm512_set1_epi64(static_cast<long long>(h0)));
    acc.v[1] = _mm512_mask_add_epi64(acc.v[1], lane0, acc.v[1], _mm512_set1_epi64(static_cast<long long>(h1)));
    acc.v[2] = _mm512_mask_add_epi64(acc.v[2], lane0, acc.v[2], _mm512_set1_epi64(static_cast<long long>(h2)));
    return acc;
}

// acc = acc * r^8 + (the eight blocks at msg).
inline void lanes8_absorb(Vec3& acc, const std::uint8_t* msg, const Mul3& r8) noexcept {
    acc = mul_ifma(acc, r8);
    add3(acc, load8(msg));
}

// Multiplies lane k by r^(8-k), sums the lanes and leaves the result in ctx's radix-2^64
// h for the scalar code; wipes its temporaries.
inline void lanes8_finish(Poly1305& ctx, Vec3 acc) noexcept {
    alignas(64) std::uint64_t p[3][8];
    for (int k = 0; k < 8; ++k)
        for (int j = 0; j < 3; ++j) p[j][k] = ctx.pow44[7 - k][j];
    Mul3 m{_mm512_load_si512(p[0]), _mm512_load_si512(p[1]), _mm512_load_si512(p[2]),
           _mm512_mullo_epi64(_mm512_load_si512(p[1]), _mm512_set1_epi64(20)),
           _mm512_mullo_epi64(_mm512_load_si512(p[2]), _mm512_set1_epi64(20))};
    acc = mul_ifma(acc, m);
    // Each lane's limbs are below 2^45: the sums of eight below 2^48.
    std::uint64_t l0 = static_cast<std::uint64_t>(_mm512_reduce_add_epi64(acc.v[0]));
    std::uint64_t l1 = static_cast<std::uint64_t>(_mm512_reduce_add_epi64(acc.v[1]));
    std::uint64_t l2 = static_cast<std::uint64_t>(_mm512_reduce_add_epi64(acc.v[2]));
    l1 += l0 >> 44;
    l0 &= kMask44;
    l2 += l1 >> 44;
    l1 &= kMask44;
    const std::uint64_t c = l2 >> 42;
    l2 &= kMask42;
    l0 += c * 5;
    l1 += l0 >> 44;
    l0 &= kMask44;
    l2 += l1 >> 44;  // l2 < 2^42 + 1: below 2^131, a partially reduced h as the scalar code keeps
    l1 &= kMask44;
    ctx.h0 = l0 | (l1 << 44);
    ctx.h1 = (l1 >> 20) | (l2 << 24);
    ctx.h2 = l2 >> 40;
    secure_wipe(p, sizeof p);
    secure_wipe(&m, sizeof m);
    secure_wipe(&acc, sizeof acc);
    secure_wipe(&l0, sizeof l0);
    secure_wipe(&l1, sizeof l1);
    secure_wipe(&l2, sizeof l2);
}

}  // namespace
}  // namespace medveil::detail

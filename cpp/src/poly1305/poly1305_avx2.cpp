// AVX2 Poly1305: four lanes, each a Horner evaluation in r^4 over every fourth block.
//
// With n = 4J blocks m_0..m_{n-1}, h = sum_i m_i r^(n-i) = sum_k r^(4-k) A_k, where lane k
// accumulates A_k = sum_j m_{4j+k} (r^4)^(J-1-j). So the loop is A = A * r^4 + M on all
// four lanes (run as two interleaved chains in r^8 to hide the multiply latency), and the
// last step multiplies lane k by r^(4-k) instead and sums the lanes.
// Numbers are held in radix 2^26 (five limbs, one 64-bit lane each) because
// _mm256_mul_epu32 gives 32x32->64 products: limbs < 2^28 times 5 r < 2^29 summed five
// times stay below 2^64. The running h of the scalar code enters lane 0 of the first
// group and leaves as the lane sum, so the two paths interleave freely.
// Compiled with -mavx2 and only called after the dispatcher saw AVX2 on the CPU.
#include <immintrin.h>

#include <cstring>

#include "medveil/chacha20.hpp"
#include "medveil/poly1305.hpp"

namespace medveil::detail {
namespace {

using u128 = unsigned __int128;
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
inline Vec5 mulmod(const Vec5& h, const __m256i r[5], const __m256i r5[5]) noexcept {
    const __m256i mask = _mm256_set1_epi64x(static_cast<long long>(kMask26));
    __m256i d[5];
    for (int k = 0; k < 5; ++k) {
        __m256i s = _mm256_mul_epu32(h.v[0], r[k]);
        for (int i = 1; i <= k; ++i) s = _mm256_add_epi64(s, _mm256_mul_epu32(h.v[i], r[k - i]));
        for (int i = k + 1; i < 5; ++i)
            s = _mm256_add_epi64(s, _mm256_mul_epu32(h.v[i], r5[k - i + 5]));
        d[k] = s;
    }
    // Two carry chains side by side (d0 -> d1 -> d2 -> d3 and d3 -> d4 -> 5 * d0 -> d1)
    // halve the latency of the serial chain; every limb ends below 2^26 plus a carry.
    __m256i c0 = _mm256_srli_epi64(d[0], 26), c3 = _mm256_srli_epi64(d[3], 26);
    d[0] = _mm256_and_si256(d[0], mask);
    d[3] = _mm256_and_si256(d[3], mask);
    d[1] = _mm256_add_epi64(d[1], c0);
    d[4] = _mm256_add_epi64(d[4], c3);
    __m256i c1 = _mm256_srli_epi64(d[1], 26), c4 = _mm256_srli_epi64(d[4], 26);
    d[1] = _mm256_and_si256(d[1], mask);
    d[4] = _mm256_and_si256(d[4], mask);
    d[2] = _mm256_add_epi64(d[2], c1);
    d[0] = _mm256_add_epi64(d[0], _mm256_add_epi64(c4, _mm256_slli_epi64(c4, 2)));
    __m256i c2 = _mm256_srli_epi64(d[2], 26);
    c0 = _mm256_srli_epi64(d[0], 26);
    d[2] = _mm256_and_si256(d[2], mask);
    d[0] = _mm256_and_si256(d[0], mask);
    d[3] = _mm256_add_epi64(d[3], c2);
    d[1] = _mm256_add_epi64(d[1], c0);
    c3 = _mm256_srli_epi64(d[3], 26);
    d[3] = _mm256_and_si256(d[3], mask);
    d[4] = _mm256_add_epi64(d[4], c3);
    Vec5 out;
    for (int k = 0; k < 5; ++k) out.v[k] = d[k];
    return out;
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

}  // namespace

void poly1305_blocks_avx2(Poly1305& ctx, const std::uint8_t* msg, std::size_t groups) noexcept {
    if (groups == 0) return;
    if (!ctx.have_pow26) make_powers(ctx);
    // Broadcast r^4 and r^8 (and 5 times each) for the loops; per-lane powers for the
    // last step, in the (0, 2, 1, 3) lane order of load4: lane k needs r^(4-k).
    __m256i r4[5], r4x5[5], r8[5], r8x5[5], rl[5], rlx5[5];
    for (int j = 0; j < 5; ++j) {
        r4[j] = _mm256_set1_epi64x(ctx.pow26[3][j]);
        r4x5[j] = _mm256_set1_epi64x(5LL * ctx.pow26[3][j]);
        r8[j] = _mm256_set1_epi64x(ctx.pow26[4][j]);
        r8x5[j] = _mm256_set1_epi64x(5LL * ctx.pow26[4][j]);
        rl[j] = _mm256_setr_epi64x(ctx.pow26[3][j], ctx.pow26[1][j], ctx.pow26[2][j],
                                   ctx.pow26[0][j]);
        rlx5[j] = _mm256_setr_epi64x(5LL * ctx.pow26[3][j], 5LL * ctx.pow26[1][j],
                                     5LL * ctx.pow26[2][j], 5LL * ctx.pow26[0][j]);
    }
    std::uint64_t h[5];
    to26(ctx.h0, ctx.h1, ctx.h2, h);
    Vec5 acc = load4(msg);
    for (int j = 0; j < 5; ++j)
        acc.v[j] = _mm256_add_epi64(acc.v[j], _mm256_setr_epi64x(static_cast<long long>(h[j]), 0, 0, 0));
    msg += 64;
    std::size_t left = groups - 1;
    if (left % 2 == 1) {
        acc = mulmod(acc, r4, r4x5);
        const Vec5 m = load4(msg);
        for (int j = 0; j < 5; ++j) acc.v[j] = _mm256_add_epi64(acc.v[j], m.v[j]);
        msg += 64;
        --left;
    }
    if (left > 0) {
        // The remaining 2P groups M_1..M_2P as two Horner chains in r^8, which the core
        // runs side by side: acc <- acc r^8 + M_2t and odd <- odd r^8 + M_2t-1; at the
        // end acc + odd r^4 is the single chain's acc r^(8P) + sum M_i r^(4(2P - i)).
        Vec5 odd = load4(msg);
        acc = mulmod(acc, r8, r8x5);
        Vec5 m = load4(msg + 64);
        for (int j = 0; j < 5; ++j) acc.v[j] = _mm256_add_epi64(acc.v[j], m.v[j]);
        msg += 128;
        for (left -= 2; left > 0; left -= 2) {
            odd = mulmod(odd, r8, r8x5);
            acc = mulmod(acc, r8, r8x5);
            const Vec5 m1 = load4(msg);
            const Vec5 m2 = load4(msg + 64);
            for (int j = 0; j < 5; ++j) {
                odd.v[j] = _mm256_add_epi64(odd.v[j], m1.v[j]);
                acc.v[j] = _mm256_add_epi64(acc.v[j], m2.v[j]);
            }
            msg += 128;
        }
        odd = mulmod(odd, r4, r4x5);
        for (int j = 0; j < 5; ++j) acc.v[j] = _mm256_add_epi64(acc.v[j], odd.v[j]);
    }
    acc = mulmod(acc, rl, rlx5);
    // Sum the four lanes limb by limb, then back to radix 2^64 for the scalar code.
    alignas(32) std::uint64_t lanes[4];
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
    secure_wipe(r4, sizeof r4);
    secure_wipe(r4x5, sizeof r4x5);
    secure_wipe(r8, sizeof r8);
    secure_wipe(r8x5, sizeof r8x5);
    secure_wipe(rl, sizeof rl);
    secure_wipe(rlx5, sizeof rlx5);
}

}  // namespace medveil::detail

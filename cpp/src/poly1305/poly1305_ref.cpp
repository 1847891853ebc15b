// Portable Poly1305 in radix 2^64 with unsigned __int128 products (RFC 8439 section 2.5).
//
// h = h0 + 2^64 h1 + 2^128 h2 and r = r0 + 2^64 r1. Clamping makes r0, r1 < 2^60 and
// r1 a multiple of 4, so the 2^128 r1 terms reduce exactly: 2^128 r1 = 2^130 (r1 / 4)
// = 5 (r1 / 4) (mod p), i.e. a multiply by s1 = r1 + r1 / 4. All branches and table
// look-ups are independent of secret data.
#include "medveil/poly1305.hpp"

#include <cstring>

#include "medveil/chacha20.hpp"

namespace medveil {
namespace {

using u128 = unsigned __int128;

inline std::uint64_t load64_le(const std::uint8_t* p) noexcept {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

inline void store64_le(std::uint8_t* p, std::uint64_t v) noexcept {
    for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}

// Absorbs whole 16-byte blocks; hibit is 1 for full blocks, 0 for the padded final one
// (whose 0x01 byte is already in the data).
void blocks(Poly1305& c, const std::uint8_t* m, std::size_t nblocks, std::uint64_t hibit) noexcept {
    const std::uint64_t r0 = c.r0, r1 = c.r1, s1 = c.s1;
    std::uint64_t h0 = c.h0, h1 = c.h1, h2 = c.h2;
    while (nblocks--) {
        // h += m (+ 2^128)
        u128 t = static_cast<u128>(h0) + load64_le(m);
        h0 = static_cast<std::uint64_t>(t);
        t = static_cast<u128>(h1) + load64_le(m + 8) + static_cast<std::uint64_t>(t >> 64);
        h1 = static_cast<std::uint64_t>(t);
        h2 += static_cast<std::uint64_t>(t >> 64) + hibit;  // h2 <= 6 here

        // h *= r (mod 2^130 - 5), partially reduced.
        const u128 d0 = static_cast<u128>(h0) * r0 + static_cast<u128>(h1) * s1;
        u128 d1 = static_cast<u128>(h0) * r1 + static_cast<u128>(h1) * r0 +
                  static_cast<u128>(h2) * s1;
        std::uint64_t d2 = h2 * r0;  // < 2^63
        d1 += d0 >> 64;
        d2 += static_cast<std::uint64_t>(d1 >> 64);
        h0 = static_cast<std::uint64_t>(d0);
        h1 = static_cast<std::uint64_t>(d1);
        // Bits from 2^130 up are folded back times 5 (= 4c + c).
        const std::uint64_t c5 = (d2 & ~std::uint64_t(3)) + (d2 >> 2);
        h2 = d2 & 3;
        t = static_cast<u128>(h0) + c5;
        h0 = static_cast<std::uint64_t>(t);
        t = static_cast<u128>(h1) + static_cast<std::uint64_t>(t >> 64);
        h1 = static_cast<std::uint64_t>(t);
        h2 += static_cast<std::uint64_t>(t >> 64);  // h2 <= 4
        m += 16;
    }
    c.h0 = h0;
    c.h1 = h1;
    c.h2 = h2;
}

}  // namespace

void poly1305_init(Poly1305& ctx, const std::uint8_t key[32]) noexcept {
    ctx.r0 = load64_le(key) & 0x0ffffffc0fffffffULL;
    ctx.r1 = load64_le(key + 8) & 0x0ffffffc0ffffffcULL;
    ctx.s1 = ctx.r1 + (ctx.r1 >> 2);
    ctx.h0 = ctx.h1 = ctx.h2 = 0;
    ctx.pad0 = load64_le(key + 16);
    ctx.pad1 = load64_le(key + 24);
    ctx.buf_len = 0;
    std::memset(ctx.buf, 0, sizeof ctx.buf);
    std::memset(ctx.pow26, 0, sizeof ctx.pow26);
    ctx.have_pow26 = false;
    std::memset(ctx.pow44, 0, sizeof ctx.pow44);
    ctx.have_pow44 = false;
}

void poly1305_update(Poly1305& ctx, const std::uint8_t* msg, std::size_t len) noexcept {
    poly1305_update(active_backend(), ctx, msg, len);
}

void poly1305_update(Backend backend, Poly1305& ctx, const std::uint8_t* msg,
                     std::size_t len) noexcept {
    if (len == 0) return;
    if (ctx.buf_len > 0) {
        const std::size_t take = len < 16 - ctx.buf_len ? len : 16 - ctx.buf_len;
        std::memcpy(ctx.buf + ctx.buf_len, msg, take);
        ctx.buf_len += take;
        msg += take;
        len -= take;
        if (ctx.buf_len < 16) return;
        blocks(ctx, ctx.buf, 1, 1);
        ctx.buf_len = 0;
    }
    std::size_t full = len / 16;
#ifdef MEDVEIL_HAVE_AVX512
    // Eight IFMA lanes; like the AVX2 path it pays a fixed cost per call (the final
    // per-lane powers and fold), so it takes runs of 1 KiB and more.
    if (backend == Backend::avx512 && full >= 64) {
        const std::size_t groups = full / 8;
        detail::poly1305_blocks_avx512(ctx, msg, groups);
        msg += 128 * groups;
        len -= 128 * groups;
        full -= 8 * groups;
    }
#endif
#ifdef MEDVEIL_HAVE_AVX2
    // The vector path pays a fixed cost per call (powers of r once, lane set-up and the
    // final fold each time), so it takes only long runs.
    if (has_avx2(backend) && full >= 32) {
        const std::size_t groups = full / 4;
        detail::poly1305_blocks_avx2(ctx, msg, groups);
        msg += 64 * groups;
        len -= 64 * groups;
        full -= 4 * groups;
    }
#endif
    (void)backend;
    if (full > 0) blocks(ctx, msg, full, 1);
    msg += 16 * full;
    len -= 16 * full;
    if (len > 0) {
        std::memcpy(ctx.buf, msg, len);
        ctx.buf_len = len;
    }
}

void poly1305_final(Poly1305& ctx, std::uint8_t tag[16]) noexcept {
    if (ctx.buf_len > 0) {
        ctx.buf[ctx.buf_len] = 1;
        for (std::size_t i = ctx.buf_len + 1; i < 16; ++i) ctx.buf[i] = 0;
        blocks(ctx, ctx.buf, 1, 0);
    }
    std::uint64_t h0 = ctx.h0, h1 = ctx.h1, h2 = ctx.h2;
    // Fold bits above 2^130 once more, then subtract p if h >= p, without branching.
    const std::uint64_t c5 = (h2 & ~std::uint64_t(3)) + (h2 >> 2);
    h2 &= 3;
    u128 t = static_cast<u128>(h0) + c5;
    h0 = static_cast<std::uint64_t>(t);
    t = static_cast<u128>(h1) + static_cast<std::uint64_t>(t >> 64);
    h1 = static_cast<std::uint64_t>(t);
    h2 += static_cast<std::uint64_t>(t >> 64);
    t = static_cast<u128>(h0) + 5;
    const std::uint64_t g0 = static_cast<std::uint64_t>(t);
    t = static_cast<u128>(h1) + static_cast<std::uint64_t>(t >> 64);
    const std::uint64_t g1 = static_cast<std::uint64_t>(t);
    const std::uint64_t g2 = h2 + static_cast<std::uint64_t>(t >> 64);
    const std::uint64_t use_g = 0 - (g2 >> 2);  // all ones when h + 5 >= 2^130, i.e. h >= p
    h0 = (h0 & ~use_g) | (g0 & use_g);
    h1 = (h1 & ~use_g) | (g1 & use_g);
    // tag = (h + pad) mod 2^128
    t = static_cast<u128>(h0) + ctx.pad0;
    store64_le(tag, static_cast<std::uint64_t>(t));
    store64_le(tag + 8, h1 + ctx.pad1 + static_cast<std::uint64_t>(t >> 64));
    secure_wipe(&ctx, sizeof ctx);
}

void poly1305(const std::uint8_t key[32], const std::uint8_t* msg, std::size_t len,
              std::uint8_t tag[16]) noexcept {
    Poly1305 ctx;
    poly1305_init(ctx, key);
    poly1305_update(ctx, msg, len);
    poly1305_final(ctx, tag);
}

bool verify16(const std::uint8_t a[16], const std::uint8_t b[16]) noexcept {
    // Accumulate every difference; the only branch is on the final, public answer.
    unsigned diff = 0;
    for (int i = 0; i < 16; ++i) diff |= static_cast<unsigned>(a[i] ^ b[i]);
    return ((diff - 1U) >> 8) & 1U;
}

}  // namespace medveil

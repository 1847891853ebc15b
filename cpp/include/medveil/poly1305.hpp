// Poly1305 one-time authenticator (RFC 8439 section 2.5).
//
// A key must authenticate one message only; the AEAD derives a fresh one per nonce.
// Contexts are wiped by poly1305_final; a context abandoned early should be wiped with
// secure_wipe by its owner.
#pragma once

#include <cstddef>
#include <cstdint>

#include "medveil/dispatch.hpp"

namespace medveil {

// Accumulator h in radix 2^64 (h2 holds the few bits above 2^128), clamped r, and the
// pad s added at the end; buffer for a partial 16-byte block between updates.
struct Poly1305 {
    std::uint64_t r0, r1, s1;  // s1 = r1 + r1 / 4: folds 2^130 = 5 into the multiply
    std::uint64_t h0, h1, h2;
    std::uint64_t pad0, pad1;
    std::uint8_t buf[16];
    std::size_t buf_len;
    // r, r^2, r^3, r^4, r^8 in radix 2^26, filled on first use by the 4-way SIMD path.
    std::uint32_t pow26[5][5];
    bool have_pow26;
    // r^1 .. r^8 in radix 2^44 (three limbs), filled on first use by the 8-way IFMA path.
    std::uint64_t pow44[8][3];
    bool have_pow44;
};

void poly1305_init(Poly1305& ctx, const std::uint8_t key[32]) noexcept;
void poly1305_update(Poly1305& ctx, const std::uint8_t* msg, std::size_t len) noexcept;
// The same on a chosen backend (the AEAD passes its own, so one call uses one backend).
void poly1305_update(Backend backend, Poly1305& ctx, const std::uint8_t* msg,
                     std::size_t len) noexcept;
// Writes the tag and wipes the context.
void poly1305_final(Poly1305& ctx, std::uint8_t tag[16]) noexcept;
// One-shot MAC of msg.
void poly1305(const std::uint8_t key[32], const std::uint8_t* msg, std::size_t len,
              std::uint8_t tag[16]) noexcept;

// True when a == b; the time taken does not depend on where they differ.
bool verify16(const std::uint8_t a[16], const std::uint8_t b[16]) noexcept;

namespace detail {
#ifdef MEDVEIL_HAVE_AVX2
// Absorbs 4 * groups full 16-byte blocks, four lanes at a time (Horner in r^4 per lane).
void poly1305_blocks_avx2(Poly1305& ctx, const std::uint8_t* msg, std::size_t groups) noexcept;
#endif
#ifdef MEDVEIL_HAVE_AVX512
// Absorbs 8 * groups full 16-byte blocks, eight lanes at a time with AVX-512 IFMA.
void poly1305_blocks_avx512(Poly1305& ctx, const std::uint8_t* msg, std::size_t groups) noexcept;
#endif
}  // namespace detail

}  // namespace medveil

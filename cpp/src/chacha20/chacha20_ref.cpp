// Portable ChaCha20, straight from RFC 8439 section 2.3.
#include <cstring>

#include "medveil/chacha20.hpp"

namespace medveil {
namespace {

inline std::uint32_t rotl(std::uint32_t v, int c) noexcept {
    return (v << c) | (v >> (32 - c));
}

inline std::uint32_t load32_le(const std::uint8_t* p) noexcept {
    return std::uint32_t(p[0]) | (std::uint32_t(p[1]) << 8) | (std::uint32_t(p[2]) << 16) |
           (std::uint32_t(p[3]) << 24);
}

inline void store32_le(std::uint8_t* p, std::uint32_t v) noexcept {
    p[0] = static_cast<std::uint8_t>(v);
    p[1] = static_cast<std::uint8_t>(v >> 8);
    p[2] = static_cast<std::uint8_t>(v >> 16);
    p[3] = static_cast<std::uint8_t>(v >> 24);
}

#define MEDVEIL_QR(a, b, c, d)            \
    a += b; d ^= a; d = rotl(d, 16);      \
    c += d; b ^= c; b = rotl(b, 12);      \
    a += b; d ^= a; d = rotl(d, 8);       \
    c += d; b ^= c; b = rotl(b, 7)

void block_words(const std::uint32_t in[16], std::uint32_t out[16]) noexcept {
    std::uint32_t x[16];
    std::memcpy(x, in, sizeof x);
    for (int i = 0; i < 10; ++i) {
        MEDVEIL_QR(x[0], x[4], x[8], x[12]);
        MEDVEIL_QR(x[1], x[5], x[9], x[13]);
        MEDVEIL_QR(x[2], x[6], x[10], x[14]);
        MEDVEIL_QR(x[3], x[7], x[11], x[15]);
        MEDVEIL_QR(x[0], x[5], x[10], x[15]);
        MEDVEIL_QR(x[1], x[6], x[11], x[12]);
        MEDVEIL_QR(x[2], x[7], x[8], x[13]);
        MEDVEIL_QR(x[3], x[4], x[9], x[14]);
    }
    for (int i = 0; i < 16; ++i) out[i] = x[i] + in[i];
    secure_wipe(x, sizeof x);
}
#undef MEDVEIL_QR

void init_state(std::uint32_t s[16], const std::uint8_t key[32], std::uint32_t counter,
                const std::uint8_t nonce[12]) noexcept {
    s[0] = 0x61707865U;
    s[1] = 0x3320646eU;
    s[2] = 0x79622d32U;
    s[3] = 0x6b206574U;
    for (int i = 0; i < 8; ++i) s[4 + i] = load32_le(key + 4 * i);
    s[12] = counter;
    for (int i = 0; i < 3; ++i) s[13 + i] = load32_le(nonce + 4 * i);
}

}  // namespace

void secure_wipe(void* p, std::size_t n) noexcept {
    volatile auto* v = static_cast<volatile std::uint8_t*>(p);
    while (n--) *v++ = 0;
}

void chacha20_block(const std::uint8_t key[32], std::uint32_t counter,
                    const std::uint8_t nonce[12], std::uint8_t out[64]) noexcept {
    std::uint32_t s[16], w[16];
    init_state(s, key, counter, nonce);
    block_words(s, w);
    for (int i = 0; i < 16; ++i) store32_le(out + 4 * i, w[i]);
    secure_wipe(s, sizeof s);
    secure_wipe(w, sizeof w);
}

namespace detail {

void chacha20_xor_ref(const std::uint8_t key[32], const std::uint8_t nonce[12],
                      std::uint32_t counter, const std::uint8_t* in, std::uint8_t* out,
                      std::size_t len) noexcept {
    std::uint32_t s[16], w[16];
    std::uint8_t ks[64];
    init_state(s, key, counter, nonce);
    while (len > 0) {
        block_words(s, w);
        for (int i = 0; i < 16; ++i) store32_le(ks + 4 * i, w[i]);
        const std::size_t n = len < 64 ? len : 64;
        if (in != nullptr)
            for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::uint8_t>(in[i] ^ ks[i]);
        else
            std::memcpy(out, ks, n);
        len -= n;
        out += n;
        if (in != nullptr) in += n;
        ++s[12];
    }
    secure_wipe(s, sizeof s);
    secure_wipe(w, sizeof w);
    secure_wipe(ks, sizeof ks);
}

}  // namespace detail
}  // namespace medveil

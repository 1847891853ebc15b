// ChaCha20-Poly1305 AEAD (RFC 8439 section 2.8), detached tag.
//
// Seal: out = in XOR ChaCha20(key, nonce, counter 1), tag = Poly1305 over
// aad | pad16 | out | pad16 | le64(aad_len) | le64(len) with the one-time key from block 0.
// Open reads every byte of `in` and `tag` once: each stage of ciphertext is copied to a
// local buffer that feeds both Poly1305 and the decryption, so a concurrent writer to
// `in` cannot make it return plaintext other than the decryption of the authenticated
// bytes. Plaintext is written to `out` as it goes and counts only when open returns true
// (tags compared in constant time); on failure `out` is wiped (zeroed), or with in == out
// encrypted again so it holds the ciphertext it held before. in == out is allowed; other
// overlaps are not.
#pragma once

#include <cstddef>
#include <cstdint>

#include "medveil/dispatch.hpp"

namespace medveil {

struct Poly1305;

constexpr std::size_t kAeadKeyBytes = 32;
constexpr std::size_t kAeadNonceBytes = 12;
constexpr std::size_t kAeadTagBytes = 16;
// The 32-bit block counter starts at 1 for the payload: at most 2^32 - 1 blocks.
constexpr std::uint64_t kAeadMaxBytes = ((std::uint64_t(1) << 32) - 1) * 64;

// Throws std::length_error if len exceeds kAeadMaxBytes.
void aead_seal(const std::uint8_t key[32], const std::uint8_t nonce[12], const std::uint8_t* aad,
               std::size_t aad_len, const std::uint8_t* in, std::size_t len, std::uint8_t* out,
               std::uint8_t tag[16]);
void aead_seal(Backend backend, const std::uint8_t key[32], const std::uint8_t nonce[12],
               const std::uint8_t* aad, std::size_t aad_len, const std::uint8_t* in,
               std::size_t len, std::uint8_t* out, std::uint8_t tag[16]);

// Returns false, with `out` wiped (in place: restored), when the tag does not
// authenticate (key, nonce, aad, in).
[[nodiscard]] bool aead_open(const std::uint8_t key[32], const std::uint8_t nonce[12],
                             const std::uint8_t* aad, std::size_t aad_len, const std::uint8_t* in,
                             std::size_t len, const std::uint8_t tag[16], std::uint8_t* out);
[[nodiscard]] bool aead_open(Backend backend, const std::uint8_t key[32],
                             const std::uint8_t nonce[12], const std::uint8_t* aad,
                             std::size_t aad_len, const std::uint8_t* in, std::size_t len,
                             const std::uint8_t tag[16], std::uint8_t* out);

namespace detail {
#ifdef MEDVEIL_HAVE_AVX2
// The stitched seal loop: encrypts steps * 512 bytes from block `counter` (eight AVX2
// ChaCha20 blocks per step) and absorbs the ciphertext into mac, whose partial-block
// buffer must be empty, the four-lane Poly1305 of each step's ciphertext running
// during the next step's rounds.
void aead_seal_stitched_avx2(const std::uint8_t key[32], const std::uint8_t nonce[12],
                             std::uint32_t counter, const std::uint8_t* in, std::uint8_t* out,
                             std::size_t steps, Poly1305& mac) noexcept;
// Open of steps * 512 bytes in the same shape; each step's ciphertext is copied once to a
// local buffer that feeds both the MAC and the decryption.
void aead_open_stitched_avx2(const std::uint8_t key[32], const std::uint8_t nonce[12],
                             std::uint32_t counter, const std::uint8_t* in, std::uint8_t* out,
                             std::size_t steps, Poly1305& mac) noexcept;
#endif
#ifdef MEDVEIL_HAVE_AVX512
// The same with sixteen AVX-512 ChaCha20 blocks and eight IFMA Poly1305 lanes per
// 1024-byte step.
void aead_seal_stitched_avx512(const std::uint8_t key[32], const std::uint8_t nonce[12],
                               std::uint32_t counter, const std::uint8_t* in, std::uint8_t* out,
                               std::size_t steps, Poly1305& mac) noexcept;
void aead_open_stitched_avx512(const std::uint8_t key[32], const std::uint8_t nonce[12],
                               std::uint32_t counter, const std::uint8_t* in, std::uint8_t* out,
                               std::size_t steps, Poly1305& mac) noexcept;
#endif
}  // namespace detail

}  // namespace medveil

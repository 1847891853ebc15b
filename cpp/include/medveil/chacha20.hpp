// ChaCha20 (RFC 8439): 256-bit key, 96-bit nonce, 32-bit block counter.
//
// The one implementation of the cipher in the core: the AEAD, the sealed-file payload
// and the CSPRNG behind the noise samplers all call these functions.
#pragma once

#include <cstddef>
#include <cstdint>

#include "medveil/dispatch.hpp"

namespace medveil {

// One 64-byte keystream block for (key, counter, nonce).
void chacha20_block(const std::uint8_t key[32], std::uint32_t counter,
                    const std::uint8_t nonce[12], std::uint8_t out[64]) noexcept;

// out = in XOR keystream, starting at block `counter`; in == out is allowed, and
// in == nullptr writes the keystream itself. Throws std::length_error if the 32-bit
// block counter would wrap (more than 2^32 - counter blocks).
void chacha20_xor(const std::uint8_t key[32], const std::uint8_t nonce[12],
                  std::uint32_t counter, const std::uint8_t* in, std::uint8_t* out,
                  std::size_t len);
void chacha20_xor(Backend backend, const std::uint8_t key[32], const std::uint8_t nonce[12],
                  std::uint32_t counter, const std::uint8_t* in, std::uint8_t* out,
                  std::size_t len);

// Overwrites memory in a way the optimiser may not remove.
void secure_wipe(void* p, std::size_t n) noexcept;

namespace detail {
// Per-backend bulk XOR over whole and partial blocks; counter checks are done by the caller.
void chacha20_xor_ref(const std::uint8_t key[32], const std::uint8_t nonce[12],
                      std::uint32_t counter, const std::uint8_t* in, std::uint8_t* out,
                      std::size_t len) noexcept;
#ifdef MEDVEIL_HAVE_AVX2
// Eight blocks per step, one state word of all eight blocks per ymm register.
void chacha20_xor_avx2(const std::uint8_t key[32], const std::uint8_t nonce[12],
                       std::uint32_t counter, const std::uint8_t* in, std::uint8_t* out,
                       std::size_t len) noexcept;
#endif
#ifdef MEDVEIL_HAVE_AVX512
// Sixteen blocks per step, one state word of all sixteen blocks per zmm register; the
// tail under 1024 bytes goes to the AVX2 kernel.
void chacha20_xor_avx512(const std::uint8_t key[32], const std::uint8_t nonce[12],
                         std::uint32_t counter, const std::uint8_t* in, std::uint8_t* out,
                         std::size_t len) noexcept;
#endif
}  // namespace detail

}  // namespace medveil

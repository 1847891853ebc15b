#include <stdexcept>

#include "medveil/chacha20.hpp"

namespace medveil {

void chacha20_xor(Backend backend, const std::uint8_t key[32], const std::uint8_t nonce[12],
                  std::uint32_t counter, const std::uint8_t* in, std::uint8_t* out,
                  std::size_t len) {
    // RFC 8439 forbids reusing keystream, which a wrapping 32-bit counter would do.
    const std::uint64_t blocks = (static_cast<std::uint64_t>(len) + 63U) / 64U;
    if (blocks > (std::uint64_t(1) << 32) - counter)
        throw std::length_error("chacha20: message too long for the 32-bit block counter");
    if (len == 0) return;
#ifdef MEDVEIL_HAVE_AVX512
    if (backend == Backend::avx512) {
        detail::chacha20_xor_avx512(key, nonce, counter, in, out, len);
        return;
    }
#endif
#ifdef MEDVEIL_HAVE_AVX2
    if (backend == Backend::avx2) {
        detail::chacha20_xor_avx2(key, nonce, counter, in, out, len);
        return;
    }
#endif
    (void)backend;
    detail::chacha20_xor_ref(key, nonce, counter, in, out, len);
}

void chacha20_xor(const std::uint8_t key[32], const std::uint8_t nonce[12], std::uint32_t counter,
                  const std::uint8_t* in, std::uint8_t* out, std::size_t len) {
    chacha20_xor(active_backend(), key, nonce, counter, in, out, len);
}

}  // namespace medveil

// AVX2 ChaCha20: eight blocks at once, register k holding state word k of all eight
// blocks (counters c..c+7), so every quarter-round step is one vector instruction. After
// the rounds a 4x4 transpose of 32-bit words inside each 128-bit lane, then a swap of
// lanes, turns "word k of every block" back into "every word of block j" for the XOR.
// Compiled with -mavx2 and only called after the dispatcher saw AVX2 on the CPU.
#include <immintrin.h>

#include <cstring>

#include "chacha20_avx2_step.hpp"
#include "medveil/chacha20.hpp"

namespace medveil::detail {

void chacha20_xor_avx2(const std::uint8_t key[32], const std::uint8_t nonce[12],
                       std::uint32_t counter, const std::uint8_t* in, std::uint8_t* out,
                       std::size_t len) noexcept {
    __m256i s[16];
    chacha20_avx2_state(key, nonce, s);

    while (len >= 512) {
        blocks8(s, counter, in, out, [](int) {});
        counter += 8;  // wraps only past the blocks the caller's length check allowed
        len -= 512;
        out += 512;
        if (in != nullptr) in += 512;
    }
    if (len > 192) {
        // Four or more blocks left: one more 8-wide step into a buffer beats the scalar path.
        alignas(32) std::uint8_t ks[512];
        blocks8(s, counter, nullptr, ks, [](int) {});
        if (in != nullptr)
            for (std::size_t i = 0; i < len; ++i) out[i] = static_cast<std::uint8_t>(in[i] ^ ks[i]);
        else
            std::memcpy(out, ks, len);
        secure_wipe(ks, sizeof ks);
    } else if (len > 0) {
        chacha20_xor_ref(key, nonce, counter, in, out, len);
    }
    secure_wipe(s, sizeof s);
}

}  // namespace medveil::detail

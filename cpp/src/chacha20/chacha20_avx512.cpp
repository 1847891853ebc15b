// AVX-512 ChaCha20: sixteen blocks at once, register k holding state word k of all sixteen
// blocks (counters c..c+15). The layout of the AVX2 kernel, twice as wide: the rotations
// are single vprold instructions, and the 32 zmm registers hold the whole state plus the
// input words, so nothing spills. After the rounds a 4x4 transpose of 32-bit words inside
// each 128-bit lane, then a 4x4 transpose of the 128-bit lanes themselves, turns "word k
// of every block" back into "every word of block j" for the XOR.
// Compiled with AVX-512 F/VL/BW flags and only called after the dispatcher saw them.
#include "chacha20_avx512_step.hpp"
#include "medveil/chacha20.hpp"

namespace medveil::detail {

void chacha20_xor_avx512(const std::uint8_t key[32], const std::uint8_t nonce[12],
                         std::uint32_t counter, const std::uint8_t* in, std::uint8_t* out,
                         std::size_t len) noexcept {
    __m512i s[16];
    chacha20_avx512_state(key, nonce, s);
    while (len >= 1024) {
        blocks16(s, counter, in, out, [](int) {});
        counter += 16;  // wraps only past the blocks the caller's length check allowed
        len -= 1024;
        out += 1024;
        if (in != nullptr) in += 1024;
    }
    secure_wipe(s, sizeof s);
    // Under 16 blocks left: the eight-block kernel (and its own tail handling).
    if (len > 0) chacha20_xor_avx2(key, nonce, counter, in, out, len);
}

}  // namespace medveil::detail

// Stitched ChaCha20-Poly1305 for AVX-512: one pass over the message, sixteen ChaCha20
// blocks (1 KiB) per step and the eight-lane IFMA Poly1305 of 1 KiB of ciphertext
// spread over the step's double rounds (one 128-byte group after each of the first
// seven or eight), so the multiply-add chains run in the shadow of the rounds.
//
// Seal: step j encrypts in -> out while absorbing groups 1..7 of step j-1's ciphertext
// (still in L1), then step j's group 0 (as aead_avx2.cpp does with eight blocks).
// Open: step j first copies its 1 KiB of ciphertext once into a local buffer; both the
// MAC groups and the decryption read that copy, never `in` again, so a writer racing on
// the caller's buffer cannot make the decrypted bytes differ from the authenticated ones.
// Compiled with AVX-512 F/VL/BW/IFMA flags and only called after the dispatcher saw them.
#include <cstring>

#include "../chacha20/chacha20_avx512_step.hpp"
#include "../poly1305/poly1305_avx512_lanes.hpp"
#include "medveil/aead.hpp"
#include "medveil/chacha20.hpp"
#include "medveil/poly1305.hpp"

namespace medveil::detail {

void aead_seal_stitched_avx512(const std::uint8_t key[32], const std::uint8_t nonce[12],
                               std::uint32_t counter, const std::uint8_t* in, std::uint8_t* out,
                               std::size_t steps, Poly1305& mac) noexcept {
    if (steps == 0) return;
    __m512i s[16];
    chacha20_avx512_state(key, nonce, s);
    if (!mac.have_pow44) make_powers44(mac);
    Mul3 r8 = mul3_broadcast(mac.pow44[7]);

    blocks16(s, counter, in, out, [](int) {});
    Vec3 acc = lanes8_start(mac, out);  // group 0 of step 0
    const std::uint8_t* pm = out + 128;  // next ciphertext group to absorb
    for (std::size_t j = 1; j < steps; ++j) {
        in += 1024;
        out += 1024;
        counter += 16;  // wraps only past the blocks the caller's length check allowed
        blocks16(s, counter, in, out, [&](int i) {
            if (i < 7) {
                lanes8_absorb(acc, pm, r8);
                pm += 128;
            }
        });
        lanes8_absorb(acc, out, r8);
        pm = out + 128;
    }
    for (int g = 1; g < 8; ++g, pm += 128) lanes8_absorb(acc, pm, r8);
    lanes8_finish(mac, acc);
    secure_wipe(&acc, sizeof acc);
    secure_wipe(&r8, sizeof r8);
    secure_wipe(s, sizeof s);
}

void aead_open_stitched_avx512(const std::uint8_t key[32], const std::uint8_t nonce[12],
                               std::uint32_t counter, const std::uint8_t* in, std::uint8_t* out,
                               std::size_t steps, Poly1305& mac) noexcept {
    if (steps == 0) return;
    __m512i s[16];
    chacha20_avx512_state(key, nonce, s);
    if (!mac.have_pow44) make_powers44(mac);
    Mul3 r8 = mul3_broadcast(mac.pow44[7]);
    alignas(64) std::uint8_t stage[1024];
    Vec3 acc;
    for (std::size_t j = 0; j < steps; ++j, in += 1024, out += 1024, counter += 16) {
        std::memcpy(stage, in, 1024);
        // The compiler may not turn later reads of stage into fresh reads of in.
        __asm__ __volatile__("" : : "r"(stage) : "memory");
        if (j == 0)
            acc = lanes8_start(mac, stage);
        else
            lanes8_absorb(acc, stage, r8);
        blocks16(s, counter, stage, out, [&](int i) {
            if (i < 7) lanes8_absorb(acc, stage + 128 * (i + 1), r8);
        });
    }
    lanes8_finish(mac, acc);
    // stage holds ciphertext only; the plaintext went straight to out.
    secure_wipe(&acc, sizeof acc);
    secure_wipe(&r8, sizeof r8);
    secure_wipe(s, sizeof s);
}

}  // namespace medveil::detail

// Stitched ChaCha20-Poly1305 seal for AVX2: one pass over the message instead of two.
//
// While step j's eight-block ChaCha20 runs its ten double rounds, the four-lane Poly1305
// absorbs the ciphertext of step j-1 (still in L1), one 64-byte group after each of the
// first seven double rounds, and step j's first group right after it is written. The
// out-of-order core overlaps each group's multiply-and-carry chain with the rounds, and
// the ciphertext is re-read from L1 rather than L2. Measured on the dev machine (Zen 4,
// 1 MiB, CPU time): 2.3 GB/s against 2.1 GB/s for encrypt-then-MAC in 128 KiB slices with
// the same kernels. Slower here, and so not used: the scalar radix-2^64 Poly1305 stitched
// in the integer units (the scheme of OpenSSL's and BoringSSL's hand-written code; 1.2
// GB/s, bound by ~1.7 cycles/byte of compiled scalar Poly1305), a hybrid giving 8 or 16
// of every 32 blocks to the scalar code (2.0-2.1 GB/s), the groups placed between column
// and diagonal rounds, or lagging a whole step (5-10% slower).
// Compiled with -mavx2 and only called after the dispatcher saw AVX2 on the CPU.
#include "medveil/aead.hpp"

#include <cstring>

#include "../chacha20/chacha20_avx2_step.hpp"
#include "../poly1305/poly1305_avx2_lanes.hpp"
#include "medveil/chacha20.hpp"
#include "medveil/poly1305.hpp"

namespace medveil::detail {

void aead_seal_stitched_avx2(const std::uint8_t key[32], const std::uint8_t nonce[12],
                             std::uint32_t counter, const std::uint8_t* in, std::uint8_t* out,
                             std::size_t steps, Poly1305& mac) noexcept {
    if (steps == 0) return;
    __m256i s[16];
    chacha20_avx2_state(key, nonce, s);
    if (!mac.have_pow26) make_powers(mac);
    __m256i r4[5], r4x5[5];
    lanes_broadcast(mac, 0, r4, r4x5);

    blocks8(s, counter, in, out, [](int) {});
    Vec5 acc = lanes_start(mac, out);  // group 0 of step 0
    const std::uint8_t* pm = out + 64;  // next ciphertext group to absorb
    for (std::size_t j = 1; j < steps; ++j) {
        in += 512;
        out += 512;
        counter += 8;  // wraps only past the blocks the caller's length check allowed
        // Groups 1..7 of the previous step during this step's rounds, then its group 0.
        blocks8(s, counter, in, out, [&](int i) {
            if (i < 7) {
                lanes_absorb(acc, pm, r4, r4x5);
                pm += 64;
            }
        });
        lanes_absorb(acc, out, r4, r4x5);
        pm = out + 64;
    }
    for (int g = 1; g < 8; ++g, pm += 64) lanes_absorb(acc, pm, r4, r4x5);
    lanes_finish(mac, acc);
    secure_wipe(&acc, sizeof acc);
    secure_wipe(r4, sizeof r4);
    secure_wipe(r4x5, sizeof r4x5);
    secure_wipe(s, sizeof s);
}

void aead_open_stitched_avx2(const std::uint8_t key[32], const std::uint8_t nonce[12],
                             std::uint32_t counter, const std::uint8_t* in, std::uint8_t* out,
                             std::size_t steps, Poly1305& mac) noexcept {
    // Open in the same shape: each 512-byte step of ciphertext is copied once into a
    // local buffer, whose eight groups the four lanes absorb during the step's rounds
    // while the step decrypts that same copy (a writer racing on `in` cannot make the
    // decrypted bytes differ from the authenticated ones).
    if (steps == 0) return;
    __m256i s[16];
    chacha20_avx2_state(key, nonce, s);
    if (!mac.have_pow26) make_powers(mac);
    __m256i r4[5], r4x5[5];
    lanes_broadcast(mac, 0, r4, r4x5);
    alignas(32) std::uint8_t stage[512];
    Vec5 acc;
    for (std::size_t j = 0; j < steps; ++j, in += 512, out += 512, counter += 8) {
        std::memcpy(stage, in, 512);
        // The compiler may not turn later reads of stage into fresh reads of in.
        __asm__ __volatile__("" : : "r"(stage) : "memory");
        if (j == 0)
            acc = lanes_start(mac, stage);
        else
            lanes_absorb(acc, stage, r4, r4x5);
        blocks8(s, counter, stage, out, [&](int i) {
            if (i < 7) lanes_absorb(acc, stage + 64 * (i + 1), r4, r4x5);
        });
    }
    lanes_finish(mac, acc);
    secure_wipe(&acc, sizeof acc);
    secure_wipe(r4, sizeof r4);
    secure_wipe(r4x5, sizeof r4x5);
    secure_wipe(s, sizeof s);
}

}  // namespace medveil::detail

// AVX2 Poly1305: four lanes, each a Horner evaluation in r^4 over every fourth block.
//
// With n = 4J blocks m_0..m_{n-1}, h = sum_i m_i r^(n-i) = sum_k r^(4-k) A_k, where lane k
// accumulates A_k = sum_j m_{4j+k} (r^4)^(J-1-j). So the loop is A = A * r^4 + M on all
// four lanes (run as two interleaved chains in r^8 to hide the multiply latency), and the
// last step multiplies lane k by r^(4-k) instead and sums the lanes.
// Numbers are held in radix 2^26 (five limbs, one 64-bit lane each) because
// _mm256_mul_epu32 gives 32x32->64 products: limbs < 2^28 times 5 r < 2^29 summed five
// times stay below 2^64. The running h of the scalar code enters lane 0 of the first
// group and leaves as the lane sum, so the two paths interleave freely.
// Compiled with -mavx2 and only called after the dispatcher saw AVX2 on the CPU.
#include "medveil/chacha20.hpp"
#include "medveil/poly1305.hpp"
#include "poly1305_avx2_lanes.hpp"

namespace medveil::detail {

void poly1305_blocks_avx2(Poly1305& ctx, const std::uint8_t* msg, std::size_t groups) noexcept {
    if (groups == 0) return;
    if (!ctx.have_pow26) make_powers(ctx);
    __m256i r4[5], r4x5[5], r8[5], r8x5[5];
    lanes_broadcast(ctx, 0, r4, r4x5);
    lanes_broadcast(ctx, 1, r8, r8x5);
    Vec5 acc = lanes_start(ctx, msg);
    msg += 64;
    std::size_t left = groups - 1;
    if (left % 2 == 1) {
        lanes_absorb(acc, msg, r4, r4x5);
        msg += 64;
        --left;
    }
    if (left > 0) {
        // The remaining 2P groups M_1..M_2P as two Horner chains in r^8, which the core
        // runs side by side: acc <- acc r^8 + M_2t and odd <- odd r^8 + M_2t-1; at the
        // end acc + odd r^4 is the single chain's acc r^(8P) + sum M_i r^(4(2P - i)).
        // (One chain in r^4 measured 1.2x slower: each step waits for the previous.)
        Vec5 odd = load4(msg);
        lanes_absorb(acc, msg + 64, r8, r8x5);
        msg += 128;
        for (left -= 2; left > 0; left -= 2) {
            lanes_absorb(odd, msg, r8, r8x5);
            lanes_absorb(acc, msg + 64, r8, r8x5);
            msg += 128;
        }
        odd = mulmod(odd, r4, r4x5);
        for (int j = 0; j < 5; ++j) acc.v[j] = _mm256_add_epi64(acc.v[j], odd.v[j]);
        secure_wipe(&odd, sizeof odd);
    }
    lanes_finish(ctx, acc);
    secure_wipe(&acc, sizeof acc);
    secure_wipe(r4, sizeof r4);
    secure_wipe(r4x5, sizeof r4x5);
    secure_wipe(r8, sizeof r8);
    secure_wipe(r8x5, sizeof r8x5);
}

}  // namespace medveil::detail

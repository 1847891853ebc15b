// AVX-512 IFMA Poly1305: eight lanes, each a Horner evaluation in r^8 over every eighth
// block.
//
// With n = 8J blocks m_0..m_{n-1}, h = sum_i m_i r^(n-i) = sum_k r^(8-k) A_k, where lane k
// accumulates A_k = sum_j m_{8j+k} (r^8)^(J-1-j): the loop is A = A * r^8 + M on all eight
// lanes, and the last step multiplies lane k by r^(8-k) instead and sums the lanes.
// Numbers are held in radix 2^44 (limbs of 44, 44 and 42 bits, one 64-bit lane each)
// because vpmadd52luq / vpmadd52huq multiply 52-bit operands and add the low or high 52
// bits of the product: three limbs instead of the five of the 32x32-bit AVX2 path, so 18
// multiply-adds per eight blocks instead of 25 multiplies per four. Limbs whose exponents
// add to 2^132 or more fold back times 20 (2^132 = 4 * 2^130 = 20 mod p), precomputed
// into the multiplier. The running h of the scalar code enters lane 0 of the first group
// and leaves as the lane sum, so the paths interleave freely.
// Compiled with AVX-512 F/VL/BW/IFMA flags and only called after the dispatcher saw them.
#include "medveil/chacha20.hpp"
#include "medveil/poly1305.hpp"
#include "poly1305_avx512_lanes.hpp"

namespace medveil::detail {

void poly1305_blocks_avx512(Poly1305& ctx, const std::uint8_t* msg, std::size_t groups) noexcept {
    if (groups == 0) return;
    if (!ctx.have_pow44) make_powers44(ctx);
    Mul3 r8 = mul3_broadcast(ctx.pow44[7]);
    Vec3 acc = lanes8_start(ctx, msg);
    for (std::size_t g = 1; g < groups; ++g) lanes8_absorb(acc, msg + 128 * g, r8);
    lanes8_finish(ctx, acc);
    secure_wipe(&acc, sizeof acc);
    secure_wipe(&r8, sizeof r8);
}

}  // namespace medveil::detail

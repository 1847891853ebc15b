// Portable kernels of window_to_u8 (16-bit samples onto 0..255 for the text screen).
//
// Written so that the compiler vectorises both loops with the baseline instruction set
// (SSE2 on x86-64): 16-bit lanes, no branch on the data, inversion a template parameter.
#include <algorithm>
#include <cstdint>

#include "medveil/textscreen.hpp"

namespace medveil::detail {
namespace {

// The extremes in int16 lanes (SSE2 has signed 16-bit min and max): unsigned samples
// are flipped by 0x8000 first, which maps their order onto int16's, and back at the end.
void minmax16_ref(const std::uint16_t* p, std::size_t n, bool is_signed, std::int32_t* mn,
                  std::int32_t* mx) {
    const std::uint16_t flip = is_signed ? 0 : 0x8000;
    std::int16_t lo = static_cast<std::int16_t>(p[0] ^ flip), hi = lo;
    for (std::size_t i = 1; i < n; ++i) {
        const auto v = static_cast<std::int16_t>(p[i] ^ flip);
        lo = std::min(lo, v);
        hi = std::max(hi, v);
    }
    const auto back = [&](std::int16_t v) {
        const auto u = static_cast<std::uint16_t>(static_cast<std::uint16_t>(v) ^ flip);
        return is_signed ? static_cast<std::int32_t>(static_cast<std::int16_t>(u))
                         : static_cast<std::int32_t>(u);
    };
    *mn = back(lo);
    *mx = back(hi);
}

template <bool Invert>
void scale16_t(const std::uint16_t* p, std::size_t n, std::uint16_t flip, std::uint16_t ulo,
               std::uint16_t span, float scale, std::uint8_t* out) {
    for (std::size_t i = 0; i < n; ++i) {
        // In int32 (GCC left the loop scalar with 16-bit std::min here).
        const std::int32_t u = p[i] ^ flip;
        std::int32_t d = u - ulo;
        d = d < 0 ? 0 : d;
        d = d > span ? span : d;
        // d < 2**16 is exact in float; the product rounds once, like numpy's float32.
        const float f = static_cast<float>(d) * scale;
        // Round half to even as rint does, for 0 <= f < 2**23: adding 2**23 leaves no
        // fraction bits, so the sum rounds (to nearest even) and the difference is exact.
        // Unlike a call to nearbyint, this lets the compiler vectorise the loop.
        const auto r = static_cast<std::int32_t>((f + 8388608.0f) - 8388608.0f);
        out[i] = static_cast<std::uint8_t>(Invert ? 255 - r : r);
    }
}

void scale16_ref(const std::uint16_t* p, std::size_t n, bool is_signed, std::uint16_t ulo,
                 std::uint16_t span, float scale, bool invert, std::uint8_t* out) {
    const std::uint16_t flip = is_signed ? 0x8000 : 0;
    if (invert)
        scale16_t<true>(p, n, flip, ulo, span, scale, out);
    else
        scale16_t<false>(p, n, flip, ulo, span, scale, out);
}

}  // namespace

const WindowKernels kWindowRef = {minmax16_ref, scale16_ref};

}  // namespace medveil::detail

// Portable kernels of window_to_u8 (16-bit samples onto 0..255 for the text screen).
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "medveil/textscreen.hpp"

namespace medveil::detail {
namespace {

inline std::int32_t sample(const std::uint16_t* p, std::size_t i, bool is_signed) {
    return is_signed ? static_cast<std::int32_t>(static_cast<std::int16_t>(p[i]))
                     : static_cast<std::int32_t>(p[i]);
}

void minmax16_ref(const std::uint16_t* p, std::size_t n, bool is_signed, std::int32_t* mn,
                  std::int32_t* mx) {
    std::int32_t lo = sample(p, 0, is_signed), hi = lo;
    for (std::size_t i = 1; i < n; ++i) {
        const std::int32_t v = sample(p, i, is_signed);
        lo = std::min(lo, v);
        hi = std::max(hi, v);
    }
    *mn = lo;
    *mx = hi;
}

void scale16_ref(const std::uint16_t* p, std::size_t n, bool is_signed, std::int32_t clip_lo,
                 std::int32_t clip_hi, std::int32_t lo, float scale, bool invert,
                 std::uint8_t* out) {
    for (std::size_t i = 0; i < n; ++i) {
        const std::int32_t v = std::min(std::max(sample(p, i, is_signed), clip_lo), clip_hi);
        // v - lo < 2**24 is exact in float; the product rounds once, like numpy's float32.
        const float f = static_cast<float>(v - lo) * scale;
        const auto r = static_cast<std::int32_t>(std::nearbyint(f));
        out[i] = static_cast<std::uint8_t>(invert ? 255 - r : r);
    }
}

}  // namespace

const WindowKernels kWindowRef = {minmax16_ref, scale16_ref};

}  // namespace medveil::detail

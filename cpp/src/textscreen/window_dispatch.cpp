// window_to_u8's frame driver: per frame, the min and max, then the scaling pass, with the
// kernels of the requested backend.
#include <algorithm>
#include <cstring>

#include "medveil/textscreen.hpp"

namespace medveil {
namespace {

const detail::WindowKernels& window_kernels(Backend backend) {
#ifdef MEDVEIL_HAVE_AVX512
    if (backend == Backend::avx512) return detail::kWindowAvx512;
#endif
#ifdef MEDVEIL_HAVE_AVX2
    if (has_avx2(backend)) return detail::kWindowAvx2;
#endif
    (void)backend;
    return detail::kWindowRef;
}

}  // namespace

void window_to_u8(Backend backend, const std::uint16_t* data, bool is_signed,
                  std::size_t frames, std::size_t n, std::int32_t clip_lo,
                  std::int32_t clip_hi, bool invert, std::uint8_t* out) {
    if (n == 0) return;
    const detail::WindowKernels& k = window_kernels(backend);
    for (std::size_t f = 0; f < frames; ++f) {
        const std::uint16_t* p = data + f * n;
        std::uint8_t* o = out + f * n;
        std::int32_t mn = 0, mx = 0;
        k.minmax16(p, n, is_signed, &mn, &mx);
        // Clipping is monotonic: the clipped frame's extremes are the clipped extremes.
        const std::int32_t lo = std::min(std::max(mn, clip_lo), clip_hi);
        const std::int32_t hi = std::min(std::max(mx, clip_lo), clip_hi);
        if (hi == lo) {
            // A flat frame (after clipping): numpy's span of 1 maps all of it to 0.
            std::memset(o, invert ? 255 : 0, n);
            continue;
        }
        // Here mn <= lo < hi <= mx, so lo and hi are values of samples, and for every
        // sample v (mn <= v <= mx) clamp(v, clip_lo, clip_hi) = clamp(v, lo, hi): the
        // kernels clamp to the frame's own range, in 16-bit lanes.
        const std::int32_t span = hi - lo;
        // float32 division, as numpy's 255.0 / span on a float32 array; span * scale
        // rounds to at most 255 + 2**-16, so every output is in 0..255.
        const float scale = 255.0f / static_cast<float>(span);
        const auto ulo = static_cast<std::uint16_t>(is_signed ? lo + 32768 : lo);
        k.scale16(p, n, is_signed, ulo, static_cast<std::uint16_t>(span), scale, invert, o);
    }
}

void window_to_u8(const std::uint16_t* data, bool is_signed, std::size_t frames, std::size_t n,
                  std::int32_t clip_lo, std::int32_t clip_hi, bool invert, std::uint8_t* out) {
    window_to_u8(active_backend(), data, is_signed, frames, n, clip_lo, clip_hi, invert, out);
}

}  // namespace medveil

// Picks the text screen's kernel table for the requested backend.
#include "medveil/textscreen.hpp"

namespace medveil {
namespace {

const detail::TextScreenKernels& kernels(Backend backend) {
#ifdef MEDVEIL_HAVE_AVX512
    if (backend == Backend::avx512) return detail::kTextScreenAvx512;
#endif
#ifdef MEDVEIL_HAVE_AVX2
    if (has_avx2(backend)) return detail::kTextScreenAvx2;
#endif
    (void)backend;
    return detail::kTextScreenRef;
}

}  // namespace

void find_text_boxes(Backend backend, const std::uint8_t* data, std::size_t frames,
                     std::size_t rows, std::size_t cols, std::size_t channels,
                     const TextScreenParams& params, const std::int32_t* thresholds_in,
                     std::int32_t* thresholds_out, std::vector<TextBox>& out) {
    detail::find_text_boxes_with(kernels(backend), data, frames, rows, cols, channels, params,
                                 thresholds_in, thresholds_out, out);
}

void find_text_boxes(const std::uint8_t* data, std::size_t frames, std::size_t rows,
                     std::size_t cols, std::size_t channels, const TextScreenParams& params,
                     const std::int32_t* thresholds_in, std::int32_t* thresholds_out,
                     std::vector<TextBox>& out) {
    find_text_boxes(active_backend(), data, frames, rows, cols, channels, params, thresholds_in,
                    thresholds_out, out);
}

void luma_row(Backend backend, const std::uint8_t* rgb, std::size_t n, std::uint8_t* out) {
    kernels(backend).luma(rgb, n, out);
}

}  // namespace medveil

// Picks the text screen's interior classifier for the requested backend.
#include "medveil/textscreen.hpp"

namespace medveil {

void find_text_boxes(Backend backend, const std::uint8_t* data, std::size_t frames,
                     std::size_t rows, std::size_t cols, const TextScreenParams& params,
                     std::vector<TextBox>& out) {
    detail::ClassifyFn classify = detail::classify_interior_ref;
#ifdef MEDVEIL_HAVE_AVX2
    if (backend == Backend::avx2) classify = detail::classify_interior_avx2;
#endif
    (void)backend;
    detail::find_text_boxes_with(classify, data, frames, rows, cols, params, out);
}

void find_text_boxes(const std::uint8_t* data, std::size_t frames, std::size_t rows,
                     std::size_t cols, const TextScreenParams& params,
                     std::vector<TextBox>& out) {
    find_text_boxes(active_backend(), data, frames, rows, cols, params, out);
}

}  // namespace medveil

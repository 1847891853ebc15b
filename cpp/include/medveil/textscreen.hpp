// Burned-in text screen: cheap per-frame search for lines of glyph-like blobs.
//
// Algorithm (the Python test suite re-implements it in numpy and compares box for box):
//  1. Local mean over a (2r+1)^2 window clipped to the frame: sum S and pixel count N.
//     A pixel p is "bright" when p*N > S + t*N, "dark" when p*N + t*N < S.
//  2. 8-connected components of the marked pixels, labelled from row runs with union-find.
//  3. A component is a glyph when min_h <= height <= max_h, width <= 4*height and
//     10*area >= height*width and (20*area <= 19*height*width or 4*width <= height):
//     density 0.1 .. 0.95, or any density for thin bars such as I, l and 1.
//  4. Two glyphs join a line when max(h) <= 2*min(h), 2*row_overlap >= min(h) and the
//     horizontal gap g (negative when the column ranges overlap) has 2*g < 3*max(h);
//     lines are the connected groups of that relation. Lines with >= 2 glyphs are kept.
//  Score = glyphs * mean glyph contrast, a glyph's contrast being the mean over its pixels
//  of |p*N - S| / N. Boxes are half-open [row0, row1) x [col0, col1).
//
// Callers (the bindings) check dtypes, shapes and contiguity; these functions trust them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "medveil/dispatch.hpp"

namespace medveil {

struct TextScreenParams {
    int radius = 7;          // window is (2*radius+1)^2
    int threshold = 40;      // grey levels above / below the local mean
    int min_height = 4;
    int max_height = 120;
    bool bright = true;      // look for text brighter than its background
    bool dark = true;        // and / or darker
};

struct TextBox {
    std::int64_t frame, row0, row1, col0, col1, glyphs;
    double score;
};

// Appends the line boxes of every frame of a C-contiguous (frames, rows, cols) uint8
// stack to `out`, per frame in polarity order (bright, then dark), each sorted by
// (row0, col0, row1, col1).
void find_text_boxes(const std::uint8_t* data, std::size_t frames, std::size_t rows,
                     std::size_t cols, const TextScreenParams& params,
                     std::vector<TextBox>& out);
void find_text_boxes(Backend backend, const std::uint8_t* data, std::size_t frames,
                     std::size_t rows, std::size_t cols, const TextScreenParams& params,
                     std::vector<TextBox>& out);

namespace detail {
// Marks columns c in [c0, c1) of one row whose window lies inside the frame
// (r <= c < cols - r): bright[c] = row[c]*cnt > S + tc, dark[c] = row[c]*cnt + tc < S,
// with S = prefix[c+r+1] - prefix[c-r] (mod 2^32), cnt <= 129^2, tc = threshold * cnt.
using ClassifyFn = void (*)(const std::uint32_t* prefix, const std::uint8_t* row,
                            std::size_t c0, std::size_t c1, std::size_t r, std::int32_t cnt,
                            std::int32_t tc, std::uint8_t* bright, std::uint8_t* dark);
void classify_interior_ref(const std::uint32_t* prefix, const std::uint8_t* row,
                           std::size_t c0, std::size_t c1, std::size_t r, std::int32_t cnt,
                           std::int32_t tc, std::uint8_t* bright, std::uint8_t* dark);
#ifdef MEDVEIL_HAVE_AVX2
void classify_interior_avx2(const std::uint32_t* prefix, const std::uint8_t* row,
                            std::size_t c0, std::size_t c1, std::size_t r, std::int32_t cnt,
                            std::int32_t tc, std::uint8_t* bright, std::uint8_t* dark);
#endif
// The whole screen with the given interior classifier.
void find_text_boxes_with(ClassifyFn classify, const std::uint8_t* data, std::size_t frames,
                          std::size_t rows, std::size_t cols, const TextScreenParams& params,
                          std::vector<TextBox>& out);
}  // namespace detail

}  // namespace medveil

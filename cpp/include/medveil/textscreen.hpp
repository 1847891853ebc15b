// Burned-in text screen: cheap per-frame search for lines of glyph-like blobs.
//
// Algorithm (the Python test suite re-implements it in numpy and compares box for box):
//  0. Input is grey (one sample per pixel) or interleaved RGB, which is screened as its
//     Rec. 601 luma (77 R + 150 G + 29 B + 128) >> 8, computed one frame at a time into a
//     reused buffer (never the whole stack). The threshold t of a frame is given, or
//     estimated from its noise (see noise_threshold below).
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
// Noise threshold of a frame (noise_factor > 0): d = |p[y][x+1] - p[y][x]| over the rows
// y = 0, step, 2 step, ...; med = the smallest m with 2 * #{d <= m} >= #d; the threshold is
// max(threshold, min(noise_max, ceil(noise_factor * (med / 0.9539)))) (med / 0.9539
// estimates the noise sigma), or `threshold` when the frame has fewer than 2 columns.
//
// Windows of r <= 7 hold at most 225 pixels, so every sum fits 16 bits: those run in
// uint16 lanes (16 per AVX2 register, 32 per AVX-512 one); wider windows use 32-bit
// sums, scalar only.
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
    double noise_factor = 0.0;  // > 0: per-frame threshold from the frame's noise
    int noise_step = 4;         // every noise_step-th row is sampled for the noise
    int noise_max = 200;        // the noise threshold never exceeds this
    bool scores = true;         // false: boxes only, every score 0 (saves the contrast pass)
};

struct TextBox {
    std::int64_t frame, row0, row1, col0, col1, glyphs;
    double score;
};

// Appends the line boxes of every frame of a C-contiguous (frames, rows, cols, channels)
// uint8 stack (channels 1: grey, 3: interleaved RGB) to `out`, per frame in polarity
// order (bright, then dark), each sorted by (row0, col0, row1, col1). `thresholds_in`
// (frames values in 0..255, or null) overrides the threshold of each frame;
// `thresholds_out` (frames values, or null) receives the threshold each frame used.
void find_text_boxes(const std::uint8_t* data, std::size_t frames, std::size_t rows,
                     std::size_t cols, std::size_t channels, const TextScreenParams& params,
                     const std::int32_t* thresholds_in, std::int32_t* thresholds_out,
                     std::vector<TextBox>& out);
void find_text_boxes(Backend backend, const std::uint8_t* data, std::size_t frames,
                     std::size_t rows, std::size_t cols, std::size_t channels,
                     const TextScreenParams& params, const std::int32_t* thresholds_in,
                     std::int32_t* thresholds_out, std::vector<TextBox>& out);

// The checks on a candidate line (python/medveil/textdetect.py documents them and keeps
// the reference implementation: not_text, noisy_surround, extend_line; the constants
// come from there too).
struct LineCheckParams {
    std::int64_t check_glyphs = 4;        // lines with more glyphs skip the shape checks
    std::int64_t min_glyphs_in_noise = 4;
    double narrow = 0.2, sparse_ink = 0.08, blob_stroke = 0.3;
    double noise_factor = 2.0, strong_factor = 4.0;
    std::int64_t extend_lines = 4, gap_lines = 2, extend_max = 128;
};

// A candidate line on frame `frame` of a (frames, rows, cols, channels) stack (channels 1
// or 3: RGB read as luma): true when it passes the checks, with `box` (row0, row1, col0,
// col1) grown sideways over trailing ink; false when it is not text. `box` must lie in
// the frame with row0 < row1, col0 < col1.
bool check_line(const std::uint8_t* data, std::size_t rows, std::size_t cols,
                std::size_t channels, std::size_t frame, std::int64_t box[4],
                std::int64_t glyphs, std::int32_t threshold, const LineCheckParams& p);

// Rec. 601 luma (77 R + 150 G + 29 B + 128) >> 8 of n interleaved RGB pixels.
void luma_row(Backend backend, const std::uint8_t* rgb, std::size_t n, std::uint8_t* out);

// Maps each frame of a (frames, n) stack of 16-bit samples (unsigned, or two's complement
// when is_signed) onto 0..255 for the screen, exactly as numpy does it in float32 (the
// detector's reference, medveil.pixels.text.detect._to_u8_reference): v = clamp(sample,
// clip_lo, clip_hi); lo, hi = the frame's min and max of v; span = hi - lo, or 1 when
// hi == lo; out = rint(float(v - lo) * (255.0f / float(span))), half to even; 255 - out
// when invert (MONOCHROME1 as displayed). Needs clip_lo <= clip_hi.
void window_to_u8(Backend backend, const std::uint16_t* data, bool is_signed,
                  std::size_t frames, std::size_t n, std::int32_t clip_lo,
                  std::int32_t clip_hi, bool invert, std::uint8_t* out);
void window_to_u8(const std::uint16_t* data, bool is_signed, std::size_t frames, std::size_t n,
                  std::int32_t clip_lo, std::int32_t clip_hi, bool invert, std::uint8_t* out);

namespace detail {
// The per-pixel kernels of the 16-bit window pass, one table per backend.
struct TextScreenKernels {
    // out[i] = luma of rgb[3i .. 3i+2], i < n.
    void (*luma)(const std::uint8_t* rgb, std::size_t n, std::uint8_t* out);
    // v[i] += add[i] - sub[i] (mod 2^16), i < n; add or sub may be null (not added).
    void (*colsum16)(std::uint16_t* v, const std::uint8_t* add, const std::uint8_t* sub,
                     std::size_t n);
    // p[i + 1] = p[i] + v[i] (mod 2^16) for i < n; p[0] is read, not written.
    void (*prefix16)(const std::uint16_t* v, std::size_t n, std::uint16_t* p);
    // For every column c < cols, with S = p[c+r+1] - p[c-r] (mod 2^16; p must be readable
    // at [-r, cols+r]), sets bit c of bright when px[c]*cnt > S + tc, of dark when
    // px[c]*cnt + tc < S; cnt <= 257, tc <= 65535, bits beyond cols left zero. Words are
    // overwritten (no need to clear them). Border columns (c < r, c >= cols - r) get the
    // interior formula here; the caller redoes them with their clipped windows.
    void (*classify16)(const std::uint16_t* p, const std::uint8_t* px, std::size_t cols,
                       std::size_t r, std::uint32_t cnt, std::uint32_t tc,
                       std::uint64_t* bright, std::uint64_t* dark);
    // out[i] = |row[i + 1] - row[i]| for i < n - 1 (n >= 1).
    void (*absdiff)(const std::uint8_t* row, std::size_t n, std::uint8_t* out);
    // How many of d[0 .. n) are <= k.
    std::size_t (*count_le)(const std::uint8_t* d, std::size_t n, std::uint8_t k);
};
extern const TextScreenKernels kTextScreenRef;
#ifdef MEDVEIL_HAVE_AVX2
extern const TextScreenKernels kTextScreenAvx2;
#endif
#ifdef MEDVEIL_HAVE_AVX512
extern const TextScreenKernels kTextScreenAvx512;  // F/BW/VL, 32-64 pixels per step
#endif
// The kernels of window_to_u8, one table per backend.
struct WindowKernels {
    // *mn, *mx = min and max of the n >= 1 samples read as uint16 or int16.
    void (*minmax16)(const std::uint16_t* p, std::size_t n, bool is_signed, std::int32_t* mn,
                     std::int32_t* mx);
    // With u = the sample's bits, flipped by 0x8000 when is_signed (which maps int16's
    // order onto uint16's) and ulo likewise: d = min(max(u - ulo, 0), span), and out[i] =
    // rint(float(d) * scale) in float32 (255 - that when invert). The caller guarantees
    // span >= 1 and that the result lies in 0..255.
    void (*scale16)(const std::uint16_t* p, std::size_t n, bool is_signed, std::uint16_t ulo,
                    std::uint16_t span, float scale, bool invert, std::uint8_t* out);
};
extern const WindowKernels kWindowRef;
#ifdef MEDVEIL_HAVE_AVX2
extern const WindowKernels kWindowAvx2;
#endif
#ifdef MEDVEIL_HAVE_AVX512
extern const WindowKernels kWindowAvx512;
#endif
// The whole screen with the given kernels.
void find_text_boxes_with(const TextScreenKernels& k, const std::uint8_t* data,
                          std::size_t frames, std::size_t rows, std::size_t cols,
                          std::size_t channels, const TextScreenParams& params,
                          const std::int32_t* thresholds_in, std::int32_t* thresholds_out,
                          std::vector<TextBox>& out);
}  // namespace detail

}  // namespace medveil

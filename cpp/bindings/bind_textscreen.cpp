#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "buffer.hpp"
#include "medveil/textscreen.hpp"

namespace py = pybind11;
using medveil::bindings::dtype_str;

namespace {

struct Geometry {
    std::size_t frames, rows, cols, channels;
};

// Checks a uint8 C-contiguous image: (rows, cols), (frames, rows, cols), and when
// `allow_rgb` also (frames, rows, cols, 3) interleaved RGB.
Geometry check_image(const py::array& image, bool allow_rgb) {
    if (image.dtype().kind() != 'u' || image.itemsize() != 1)
        throw py::type_error("image must be uint8, got " + dtype_str(image));
    const int nd = static_cast<int>(image.ndim());
    if (nd != 2 && nd != 3 && !(allow_rgb && nd == 4))
        throw py::value_error(std::string("image must have shape (rows, cols) or (frames, rows, "
                                          "cols)") +
                              (allow_rgb ? " or (frames, rows, cols, 3)" : "") +
                              "; got ndim=" + std::to_string(nd));
    if (nd == 4 && image.shape(3) != 3)
        throw py::value_error("a 4-d image must be (frames, rows, cols, 3) RGB; got " +
                              std::to_string(image.shape(3)) + " samples per pixel");
    if (!(image.flags() & py::array::c_style))
        throw py::value_error("image must be C-contiguous; use np.ascontiguousarray()");
    Geometry g{};
    const int sp = nd == 4 ? 3 : nd;  // dims before the samples
    g.frames = sp == 3 ? static_cast<std::size_t>(image.shape(0)) : 1u;
    g.rows = static_cast<std::size_t>(image.shape(sp - 2));
    g.cols = static_cast<std::size_t>(image.shape(sp - 1));
    g.channels = nd == 4 ? 3u : 1u;
    // Run coordinates are stored as int32.
    constexpr auto lim = static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max());
    if (g.rows >= lim || g.cols >= lim)
        throw py::value_error("image rows and cols must be < 2**31");
    // Runs of a frame are numbered with uint32 in the union-find.
    if (g.rows * g.cols >= (std::size_t{1} << 32))
        throw py::value_error("a frame must have fewer than 2**32 pixels");
    return g;
}

medveil::TextScreenParams check_params(bool bright, bool dark, int min_height, int max_height,
                                       int threshold, int radius) {
    if (min_height < 1 || max_height < min_height)
        throw py::value_error("need 1 <= min_height <= max_height, got " +
                              std::to_string(min_height) + ", " + std::to_string(max_height));
    if (max_height > 1000000) throw py::value_error("max_height must be <= 1000000");
    if (threshold < 0 || threshold > 255) throw py::value_error("threshold must be in 0..255");
    if (radius < 1 || radius > 64) throw py::value_error("radius must be in 1..64");
    medveil::TextScreenParams p;
    p.bright = bright;
    p.dark = dark;
    p.min_height = min_height;
    p.max_height = max_height;
    p.threshold = threshold;
    p.radius = radius;
    return p;
}

py::tuple boxes_to_arrays(const std::vector<medveil::TextBox>& out) {
    const auto n = static_cast<py::ssize_t>(out.size());
    py::array_t<std::int64_t> boxes({n, static_cast<py::ssize_t>(6)});
    py::array_t<double> scores(n);
    auto b = boxes.mutable_unchecked<2>();
    auto s = scores.mutable_unchecked<1>();
    for (py::ssize_t i = 0; i < n; ++i) {
        const auto& t = out[static_cast<std::size_t>(i)];
        b(i, 0) = t.frame; b(i, 1) = t.row0; b(i, 2) = t.row1;
        b(i, 3) = t.col0; b(i, 4) = t.col1; b(i, 5) = t.glyphs;
        s(i) = t.score;
    }
    return py::make_tuple(boxes, scores);
}

}  // namespace

void bind_textscreen(py::module_& m) {
    auto sub = m.def_submodule("textscreen", "Burned-in text screen over 8-bit frames");

    sub.def(
        "find_text_boxes",
        [](const py::array& image, bool bright, bool dark, int min_height, int max_height,
           int threshold, int radius) {
            const Geometry g = check_image(image, false);
            const auto p = check_params(bright, dark, min_height, max_height, threshold, radius);
            std::vector<medveil::TextBox> out;
            const auto* data = static_cast<const std::uint8_t*>(image.data());
            if (image.size() > 0) {
                // Safe without the GIL: `image` holds the buffer for the whole call, and
                // the kernel reads it and writes only to `out`.
                py::gil_scoped_release release;
                medveil::find_text_boxes(data, g.frames, g.rows, g.cols, 1, p, nullptr, nullptr,
                                         out);
            }
            return boxes_to_arrays(out);
        },
        py::arg("image"), py::kw_only(), py::arg("bright") = true, py::arg("dark") = true,
        py::arg("min_height") = 4, py::arg("max_height") = 120, py::arg("threshold") = 40,
        py::arg("radius") = 7,
        "Candidate text lines of a uint8 (rows, cols) or (frames, rows, cols) image: "
        "(int64 (n, 6) frame, row0, row1, col0, col1, glyphs; float64 (n,) scores).");

    sub.def(
        "screen",
        [](const py::array& image, bool bright, bool dark, int min_height, int max_height,
           int threshold, int radius, const py::object& thresholds, double noise_factor,
           int noise_step, int noise_max, bool scores) {
            const Geometry g = check_image(image, true);
            auto p = check_params(bright, dark, min_height, max_height, threshold, radius);
            if (!std::isfinite(noise_factor) || noise_factor < 0.0 || noise_factor > 1000.0)
                throw py::value_error("noise_factor must be in 0..1000");
            if (noise_step < 1) throw py::value_error("noise_step must be >= 1");
            if (noise_max < 0 || noise_max > 255)
                throw py::value_error("noise_max must be in 0..255");
            p.noise_factor = noise_factor;
            p.noise_step = noise_step;
            p.noise_max = noise_max;
            p.scores = scores;
            py::array_t<std::int32_t, py::array::c_style> tin;
            if (!thresholds.is_none()) {
                const auto a = py::array::ensure(thresholds);
                if (!a || (a.dtype().kind() != 'i' && a.dtype().kind() != 'u'))
                    throw py::type_error("thresholds must be an integer array");
                if (a.ndim() != 1 || static_cast<std::size_t>(a.shape(0)) != g.frames)
                    throw py::value_error("thresholds must have shape (frames,) = (" +
                                          std::to_string(g.frames) + ",)");
                tin = py::array_t<std::int32_t, py::array::c_style | py::array::forcecast>::
                    ensure(a);
                for (py::ssize_t i = 0; i < tin.shape(0); ++i)
                    if (tin.at(i) < 0 || tin.at(i) > 255)
                        throw py::value_error("thresholds must be in 0..255");
                // A wider integer dtype must not wrap into range on the int32 cast.
                const auto lo = a.attr("min")().cast<long long>();
                const auto hi = a.attr("max")().cast<long long>();
                if (g.frames > 0 && (lo < 0 || hi > 255))
                    throw py::value_error("thresholds must be in 0..255");
            }
            py::array_t<std::int32_t> used(static_cast<py::ssize_t>(g.frames));
            std::vector<medveil::TextBox> out;
            const auto* data = static_cast<const std::uint8_t*>(image.data());
            const std::int32_t* tp = thresholds.is_none() ? nullptr : tin.data();
            std::int32_t* up = used.mutable_data();
            {
                // Safe without the GIL: `image`, `tin` and `used` are held by this frame
                // for the whole call; the kernel reads the first two and writes `used`
                // and `out` only.
                py::gil_scoped_release release;
                medveil::find_text_boxes(data, g.frames, g.rows, g.cols, g.channels, p, tp, up,
                                         out);
            }
            py::tuple bs = boxes_to_arrays(out);
            return py::make_tuple(bs[0], bs[1], used);
        },
        py::arg("image"), py::kw_only(), py::arg("bright") = true, py::arg("dark") = true,
        py::arg("min_height") = 4, py::arg("max_height") = 120, py::arg("threshold") = 40,
        py::arg("radius") = 7, py::arg("thresholds") = py::none(),
        py::arg("noise_factor") = 0.0, py::arg("noise_step") = 4, py::arg("noise_max") = 200,
        py::arg("scores") = true,
        "The screen on a uint8 grey (rows, cols) / (frames, rows, cols) or RGB (frames, rows, "
        "cols, 3) stack (RGB screened as Rec. 601 luma), with a per-frame threshold: given "
        "(`thresholds`), from each frame's noise (`noise_factor` > 0) or `threshold`. Returns "
        "(boxes int64 (n, 6), scores float64 (n,), thresholds used int32 (frames,)); with "
        "scores=False every score is 0 (the boxes are the same, found faster).");

    sub.def(
        "check_lines",
        [](const py::array& image, const py::array& lines, const py::array& thresholds,
           std::int64_t check_glyphs, std::int64_t min_glyphs_in_noise, double narrow,
           double sparse_ink, double blob_stroke, double noise_factor, double strong_factor,
           std::int64_t extend_lines, std::int64_t gap_lines, std::int64_t extend_max) {
            const Geometry g = check_image(image, true);
            const auto lv = py::array_t<std::int64_t, py::array::c_style>::ensure(lines);
            if (!lv || lines.dtype().kind() != 'i' || lv.ndim() != 2 || lv.shape(1) != 6)
                throw py::value_error("lines must be an int64 array of shape (n, 6): frame, "
                                      "row0, row1, col0, col1, glyphs");
            const auto tv = py::array_t<std::int32_t, py::array::c_style>::ensure(thresholds);
            if (!tv || thresholds.dtype().kind() != 'i' || tv.ndim() != 1 ||
                static_cast<std::size_t>(tv.shape(0)) != g.frames)
                throw py::value_error("thresholds must be an integer array of shape (frames,)");
            const auto n = static_cast<std::size_t>(lv.shape(0));
            const std::int64_t* L = lv.data();
            const auto rows = static_cast<std::int64_t>(g.rows);
            const auto cols = static_cast<std::int64_t>(g.cols);
            for (std::size_t i = 0; i < n; ++i) {
                const std::int64_t* l = L + 6 * i;
                if (l[0] < 0 || l[0] >= static_cast<std::int64_t>(g.frames) || l[1] < 0 ||
                    l[1] >= l[2] || l[2] > rows || l[3] < 0 || l[3] >= l[4] || l[4] > cols)
                    throw py::value_error("line " + std::to_string(i) +
                                          " is not a non-empty box inside a frame");
            }
            for (py::ssize_t f = 0; f < tv.shape(0); ++f)
                if (tv.at(f) < 0 || tv.at(f) > 255)
                    throw py::value_error("thresholds must be in 0..255");
            if (extend_lines < 0 || gap_lines < 0 || extend_max < 0 || extend_lines > 1000 ||
                gap_lines > 1000 || extend_max > (std::int64_t{1} << 30))
                throw py::value_error("extend_lines, gap_lines, extend_max out of range");
            medveil::LineCheckParams p;
            p.check_glyphs = check_glyphs;
            p.min_glyphs_in_noise = min_glyphs_in_noise;
            p.narrow = narrow;
            p.sparse_ink = sparse_ink;
            p.blob_stroke = blob_stroke;
            p.noise_factor = noise_factor;
            p.strong_factor = strong_factor;
            p.extend_lines = extend_lines;
            p.gap_lines = gap_lines;
            p.extend_max = extend_max;
            py::array_t<std::int64_t> out({static_cast<py::ssize_t>(n), py::ssize_t{5}});
            std::int64_t* o = out.mutable_data();
            const auto* data = static_cast<const std::uint8_t*>(image.data());
            const std::int32_t* T = tv.data();
            {
                // Safe without the GIL: image, lv, tv and out are held by this frame; the
                // checks read inside the boxes' frames (checked above) and write `out`.
                py::gil_scoped_release release;
                for (std::size_t i = 0; i < n; ++i) {
                    const std::int64_t* l = L + 6 * i;
                    std::int64_t box[4] = {l[1], l[2], l[3], l[4]};
                    const auto f = static_cast<std::size_t>(l[0]);
                    const bool keep = medveil::check_line(data, g.rows, g.cols, g.channels, f,
                                                          box, l[5], T[f], p);
                    o[5 * i] = keep;
                    for (int j = 0; j < 4; ++j) o[5 * i + 1 + j] = box[j];
                }
            }
            return out;
        },
        py::arg("image"), py::arg("lines"), py::arg("thresholds"), py::kw_only(),
        py::arg("check_glyphs"), py::arg("min_glyphs_in_noise"), py::arg("narrow"),
        py::arg("sparse_ink"), py::arg("blob_stroke"), py::arg("noise_factor"),
        py::arg("strong_factor"), py::arg("extend_lines"), py::arg("gap_lines"),
        py::arg("extend_max"),
        "The text detector's checks on candidate lines (frame, row0, row1, col0, col1, "
        "glyphs) of a grey or RGB stack, with each frame's threshold: int64 (n, 5) of "
        "(kept 0/1, row0, row1, col0, col1 grown over trailing ink).");

    sub.def(
        "window",
        [](const py::array& image, std::int32_t clip_lo, std::int32_t clip_hi, bool invert) {
            const char kind = image.dtype().kind();
            if ((kind != 'u' && kind != 'i') || image.itemsize() != 2)
                throw py::type_error("image must be uint16 or int16, got " + dtype_str(image));
            // A byte-swapped dtype ('>u2' here) would be read as other numbers.
            if (!image.dtype().attr("isnative").cast<bool>())
                throw py::value_error("image must be in native byte order; use "
                                      "image.astype(image.dtype.newbyteorder('='))");
            const int nd = static_cast<int>(image.ndim());
            if (nd != 2 && nd != 3)
                throw py::value_error("image must have shape (rows, cols) or (frames, rows, "
                                      "cols); got ndim=" + std::to_string(nd));
            if (!(image.flags() & py::array::c_style))
                throw py::value_error("image must be C-contiguous; use np.ascontiguousarray()");
            // Bounds well inside float32's exact integers (2**24), and ordered.
            constexpr std::int32_t lim = 1 << 20;
            if (clip_lo > clip_hi || clip_lo < -lim || clip_hi > lim)
                throw py::value_error("need -2**20 <= clip_lo <= clip_hi <= 2**20");
            const auto frames = nd == 3 ? static_cast<std::size_t>(image.shape(0)) : 1u;
            const auto rows = static_cast<std::size_t>(image.shape(nd - 2));
            const auto cols = static_cast<std::size_t>(image.shape(nd - 1));
            py::array_t<std::uint8_t> out({static_cast<py::ssize_t>(frames),
                                           static_cast<py::ssize_t>(rows),
                                           static_cast<py::ssize_t>(cols)});
            const auto* src = static_cast<const std::uint16_t*>(image.data());
            std::uint8_t* dst = out.mutable_data();
            {
                // Safe without the GIL: both arrays are held by this frame; the kernels
                // read `image` within its (contiguous) size and write `out` only.
                py::gil_scoped_release release;
                medveil::window_to_u8(src, kind == 'i', frames, rows * cols, clip_lo, clip_hi,
                                      invert, dst);
            }
            return out;
        },
        py::arg("image"), py::kw_only(), py::arg("clip_lo"), py::arg("clip_hi"),
        py::arg("invert") = false,
        "Each frame of a uint16/int16 (rows, cols) or (frames, rows, cols) stack, clipped to "
        "clip_lo..clip_hi, mapped from its min..max onto 0..255 in float32 arithmetic "
        "(numpy's, bit for bit; 255 minus that when invert); returns uint8 (frames, rows, "
        "cols).");

    sub.def(
        "luma",
        [](const py::array& rgb) {
            if (rgb.dtype().kind() != 'u' || rgb.itemsize() != 1)
                throw py::type_error("rgb must be uint8, got " + dtype_str(rgb));
            const int nd = static_cast<int>(rgb.ndim());
            if (nd != 3 && nd != 4)
                throw py::value_error("rgb must have shape (rows, cols, 3) or (frames, rows, "
                                      "cols, 3); got ndim=" + std::to_string(nd));
            if (rgb.shape(nd - 1) != 3)
                throw py::value_error("rgb must have 3 samples per pixel, got " +
                                      std::to_string(rgb.shape(nd - 1)));
            const auto cols = static_cast<std::size_t>(rgb.shape(nd - 2));
            if ((rgb.strides(nd - 1) != 1 || rgb.strides(nd - 2) != 3) && cols > 1)
                throw py::value_error("rgb pixels must be packed (strides 3, 1 in the last two "
                                      "dimensions); slice rows and frames only, or copy");
            const std::size_t rows = static_cast<std::size_t>(rgb.shape(nd - 3));
            const std::size_t frames = nd == 4 ? static_cast<std::size_t>(rgb.shape(0)) : 1u;
            const py::ssize_t rs = rgb.strides(nd - 3), fs = nd == 4 ? rgb.strides(0) : 0;
            std::vector<py::ssize_t> shape(rgb.shape(), rgb.shape() + nd - 1);
            py::array_t<std::uint8_t> out(shape);
            const auto* src = static_cast<const std::uint8_t*>(rgb.data());
            std::uint8_t* dst = out.mutable_data();
            const medveil::Backend be = medveil::active_backend();
            {
                // Safe without the GIL: both arrays are held by this frame; the kernel
                // reads `rgb` within its shape and strides and writes `out` only.
                py::gil_scoped_release release;
                for (std::size_t f = 0; f < frames; ++f)
                    for (std::size_t y = 0; y < rows; ++y)
                        medveil::luma_row(be,
                                          src + static_cast<py::ssize_t>(f) * fs +
                                              static_cast<py::ssize_t>(y) * rs,
                                          cols, dst + (f * rows + y) * cols);
            }
            return out;
        },
        py::arg("rgb"),
        "Rec. 601 luma (77 R + 150 G + 29 B + 128) >> 8 of uint8 RGB pixels (rows, cols, 3) "
        "or (frames, rows, cols, 3), any row and frame strides; returns C-contiguous uint8.");
}

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "buffer.hpp"
#include "medveil/textscreen.hpp"

namespace py = pybind11;
using medveil::bindings::dtype_str;

void bind_textscreen(py::module_& m) {
    auto sub = m.def_submodule("textscreen", "Burned-in text screen over 8-bit frames");

    sub.def(
        "find_text_boxes",
        [](const py::array& image, bool bright, bool dark, int min_height, int max_height,
           int threshold, int radius) {
            if (image.dtype().kind() != 'u' || image.itemsize() != 1)
                throw py::type_error("image must be uint8, got " + dtype_str(image));
            if (image.ndim() != 2 && image.ndim() != 3)
                throw py::value_error("image must have shape (rows, cols) or (frames, rows, "
                                      "cols); got ndim=" + std::to_string(image.ndim()));
            if (!(image.flags() & py::array::c_style))
                throw py::value_error("image must be C-contiguous; use np.ascontiguousarray()");
            if (min_height < 1 || max_height < min_height)
                throw py::value_error("need 1 <= min_height <= max_height, got " +
                                      std::to_string(min_height) + ", " +
                                      std::to_string(max_height));
            if (max_height > 1000000)
                throw py::value_error("max_height must be <= 1000000");
            if (threshold < 0 || threshold > 255)
                throw py::value_error("threshold must be in 0..255");
            if (radius < 1 || radius > 64) throw py::value_error("radius must be in 1..64");
            const int nd = static_cast<int>(image.ndim());
            const auto frames = nd == 3 ? static_cast<std::size_t>(image.shape(0)) : 1u;
            const auto rows = static_cast<std::size_t>(image.shape(nd - 2));
            const auto cols = static_cast<std::size_t>(image.shape(nd - 1));
            // Run coordinates are stored as int32.
            constexpr auto lim = static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max());
            if (rows >= lim || cols >= lim)
                throw py::value_error("image rows and cols must be < 2**31");
            // Runs of a frame are numbered with uint32 in the union-find.
            if (rows * cols >= (std::size_t{1} << 32))
                throw py::value_error("a frame must have fewer than 2**32 pixels");
            medveil::TextScreenParams p;
            p.bright = bright;
            p.dark = dark;
            p.min_height = min_height;
            p.max_height = max_height;
            p.threshold = threshold;
            p.radius = radius;
            std::vector<medveil::TextBox> out;
            const auto* data = static_cast<const std::uint8_t*>(image.data());
            if (image.size() > 0) {
                // Safe without the GIL: `image` holds the buffer for the whole call, and
                // the kernel reads it and writes only to `out`.
                py::gil_scoped_release release;
                medveil::find_text_boxes(data, frames, rows, cols, p, out);
            }
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
        },
        py::arg("image"), py::kw_only(), py::arg("bright") = true, py::arg("dark") = true,
        py::arg("min_height") = 4, py::arg("max_height") = 120, py::arg("threshold") = 40,
        py::arg("radius") = 7,
        "Candidate text lines of a uint8 (rows, cols) or (frames, rows, cols) image: "
        "(int64 (n, 6) frame, row0, row1, col0, col1, glyphs; float64 (n,) scores).");
}

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "buffer.hpp"
#include "medveil/mask.hpp"

namespace py = pybind11;
using medveil::bindings::dtype_str;
using medveil::bindings::require_inplace;

namespace {

// The dtype's byte order read from its descriptor: no attribute lookup, no string.
bool native_order(const py::array& a) {
    const char bo = a.dtype().byteorder();
    return bo == '=' || bo == '|' ||
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
           bo == '>';
#else
           bo == '<';
#endif
}

const char* kSupported = "uint8, int8, uint16, int16, uint32, int32, float32 or float64";

bool supported_dtype(char kind, py::ssize_t itemsize) {
    if (kind == 'u' || kind == 'i') return itemsize == 1 || itemsize == 2 || itemsize == 4;
    if (kind == 'f') return itemsize == 4 || itemsize == 8;
    return false;
}

// The fill value as the bytes of one element of the array's dtype; raises if it does
// not fit, because a silently wrapped or rounded mask value would leave data visible.
void value_bytes(const py::array& a, const py::object& value, std::uint8_t out[8]) {
    const char kind = a.dtype().kind();
    const auto itemsize = static_cast<std::size_t>(a.itemsize());
    // Only error messages need the dtype's name; building it costs more than a small mask.
    const auto dt = [&a] { return dtype_str(a); };
    if (kind == 'f') {
        if (!PyNumber_Check(value.ptr()) || PyComplex_Check(value.ptr()))
            throw py::type_error("mask value must be a real number for dtype " + dt());
        const double v = PyFloat_AsDouble(value.ptr());
        if (v == -1.0 && PyErr_Occurred()) throw py::error_already_set();
        if (itemsize == 4) {
            if (std::isfinite(v) && std::fabs(v) > std::numeric_limits<float>::max())
                throw py::value_error("mask value " + std::to_string(v) + " does not fit dtype " + dt());
            const auto f = static_cast<float>(v);
            std::memcpy(out, &f, 4);
        } else {
            std::memcpy(out, &v, 8);
        }
    } else {
        py::int_ iv;
        if (PyIndex_Check(value.ptr())) {
            iv = py::reinterpret_steal<py::int_>(PyNumber_Index(value.ptr()));
            if (!iv) throw py::error_already_set();
        } else if (PyFloat_Check(value.ptr()) &&
                   py::cast<bool>(value.attr("is_integer")())) {
            iv = py::int_(value);
        } else {
            throw py::type_error("mask value must be an integer for dtype " + dt() + ", got " +
                                 std::string(py::str(py::repr(value))));
        }
        int overflow = 0;
        const long long v = PyLong_AsLongLongAndOverflow(iv.ptr(), &overflow);
        const unsigned bits = static_cast<unsigned>(8 * itemsize);
        const long long lo = kind == 'u' ? 0 : -(1LL << (bits - 1));
        const long long hi = kind == 'u' ? static_cast<long long>((1ULL << bits) - 1) : (1LL << (bits - 1)) - 1;
        if (overflow != 0 || v < lo || v > hi)
            throw py::value_error("mask value " + std::string(py::str(iv)) + " does not fit dtype " +
                                  dt() + " (range " + std::to_string(lo) + ".." + std::to_string(hi) + ")");
        const auto u = static_cast<std::uint64_t>(v);
        std::memcpy(out, &u, 8);  // little-endian host: the low itemsize bytes are the element
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        std::memmove(out, out + 8 - itemsize, itemsize);
#endif
    }
    if (!native_order(a)) std::reverse(out, out + itemsize);
}

medveil::PixelLayout layout_of(py::array& a, bool planar) {
    medveil::PixelLayout px{};
    px.data = static_cast<std::uint8_t*>(a.mutable_data());
    px.itemsize = static_cast<std::size_t>(a.itemsize());
    auto dim = [&](int i) { return static_cast<std::size_t>(a.shape(i)); };
    switch (a.ndim()) {
        case 2:
            px.frames = 1; px.planes = 1; px.rows = dim(0); px.row_elems = dim(1); px.col_scale = 1;
            break;
        case 3:
            px.frames = dim(0); px.planes = 1; px.rows = dim(1); px.row_elems = dim(2); px.col_scale = 1;
            break;
        case 4:
            if (planar) {
                px.frames = dim(0); px.planes = dim(1); px.rows = dim(2); px.row_elems = dim(3); px.col_scale = 1;
            } else {
                px.frames = dim(0); px.planes = 1; px.rows = dim(1);
                px.row_elems = dim(2) * dim(3); px.col_scale = dim(3);
            }
            break;
        default:
            throw py::value_error("pixels must have 2, 3 or 4 dimensions: (rows, cols), "
                                  "(frames, rows, cols), (frames, rows, cols, samples) or, "
                                  "with planar=True, (frames, samples, rows, cols); got ndim=" +
                                  std::to_string(a.ndim()));
    }
    if (planar && a.ndim() != 4)
        throw py::value_error("planar=True needs a 4-d array (frames, samples, rows, cols)");
    return px;
}

void check_pixels(py::array& pixels) {
    if (!supported_dtype(pixels.dtype().kind(), pixels.itemsize()))
        throw py::type_error("pixels dtype " + dtype_str(pixels) + " is not supported; use " + kSupported);
    require_inplace(pixels, "pixels");
}

}  // namespace

void bind_mask(py::module_& m) {
    auto sub = m.def_submodule("mask", "In-place pixel masking kernels");

    sub.def(
        "mask_regions",
        [](py::array pixels, py::array regions, const py::object& value, bool planar) {
            check_pixels(pixels);
            if (regions.dtype().kind() != 'i' || regions.itemsize() != 8 || regions.ndim() != 2 ||
                (regions.shape(1) != 6 && regions.shape(1) != 4) ||
                !(regions.flags() & py::array::c_style) || !native_order(regions))
                throw py::value_error("regions must be a C-contiguous int64 array of shape (n, 6): "
                                      "row0, row1, col0, col1, frame0, frame1 (or (n, 4): "
                                      "row0, row1, col0, col1 on every frame)");
            std::uint8_t pattern[8] = {};
            value_bytes(pixels, value, pattern);
            medveil::PixelLayout px = layout_of(pixels, planar);
            if (pixels.size() == 0) return;
            const auto* r = static_cast<const medveil::Region*>(regions.data());
            const auto n = static_cast<std::size_t>(regions.shape(0));
            std::vector<medveil::Region> widened;
            if (regions.shape(1) == 4) {
                // Rectangles without a frame range apply to every frame.
                const auto* q = static_cast<const std::int64_t*>(regions.data());
                widened.resize(n);
                for (std::size_t i = 0; i < n; ++i)
                    widened[i] = medveil::Region{q[4 * i], q[4 * i + 1], q[4 * i + 2],
                                                 q[4 * i + 3], 0,
                                                 std::numeric_limits<std::int64_t>::max()};
                r = widened.data();
            }
            {
                // Safe without the GIL: both buffers are held by the py::array arguments
                // and the kernel touches no Python object.
                py::gil_scoped_release release;
                medveil::mask_regions(px, r, n, pattern);
            }
        },
        py::arg("pixels"), py::arg("regions"), py::arg("value") = 0, py::kw_only(),
        py::arg("planar") = false,
        "Set every sample inside each region to value, in place (regions: int64 (n, 6)).");

    sub.def(
        "fix_unused_bits",
        [](py::array pixels, int bits_stored, bool is_signed) {
            const char kind = pixels.dtype().kind();
            if ((kind != 'u' && kind != 'i') || (pixels.itemsize() != 2 && pixels.itemsize() != 4))
                throw py::type_error("fix_unused_bits needs 16- or 32-bit integer pixels, got " +
                                     dtype_str(pixels));
            require_inplace(pixels, "pixels");
            if (!native_order(pixels))
                throw py::value_error("pixels are not in native byte order; convert with "
                                      "arr.byteswap().view(arr.dtype.newbyteorder())");
            const int bits = static_cast<int>(8 * pixels.itemsize());
            if (bits_stored < 1 || bits_stored > bits)
                throw py::value_error("bits_stored=" + std::to_string(bits_stored) +
                                      " is outside 1.." + std::to_string(bits) + " for dtype " +
                                      dtype_str(pixels));
            void* data = pixels.mutable_data();
            const auto count = static_cast<std::size_t>(pixels.size());
            const auto itemsize = static_cast<std::size_t>(pixels.itemsize());
            {
                // Safe without the GIL: the buffer is held by `pixels` for the whole call.
                py::gil_scoped_release release;
                medveil::fix_unused_bits(data, count, itemsize, static_cast<unsigned>(bits_stored),
                                         is_signed);
            }
        },
        py::arg("pixels"), py::arg("bits_stored"), py::arg("signed"),
        "Clear (unsigned) or sign-fill (signed) the bits above bits_stored, in place.");
}

// Every numpy / buffer check and conversion of the bindings lives here, so each kernel
// binding reads as: check under the GIL, release it, compute.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

namespace medveil::bindings {

namespace py = pybind11;

inline std::string dtype_str(const py::array& a) {
    return py::str(a.dtype()).cast<std::string>();
}

// In-place kernels must write into the caller's memory, never into a silent copy.
inline void require_inplace(const py::array& a, const char* what) {
    if (!a.writeable())
        throw py::value_error(std::string(what) + " is read-only; pass a writable array "
                              "(e.g. arr.copy() or np.require(arr, requirements='W'))");
    const int flags = py::detail::array_proxy(a.ptr())->flags;
    if (!(flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_))
        throw py::value_error(std::string(what) + " must be C-contiguous; use "
                              "np.ascontiguousarray() and write the result back");
    if (!(flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
        throw py::value_error(std::string(what) + " is not aligned for its dtype");
}

// True when the array's bytes are in the machine's order.
inline bool native_byteorder(const py::array& a) {
    const char bo = a.dtype().attr("byteorder").cast<std::string>()[0];
    return bo == '=' || bo == '|' ||
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
           bo == '>';
#else
           bo == '<';
#endif
}

// A read-only or writable view of any object with the buffer protocol (bytes, bytearray,
// memoryview, numpy), as contiguous bytes.
struct ByteView {
    py::buffer_info info;
    const std::uint8_t* data() const { return static_cast<const std::uint8_t*>(info.ptr); }
    std::uint8_t* mutable_data() const { return static_cast<std::uint8_t*>(info.ptr); }
    std::size_t size() const { return static_cast<std::size_t>(info.size * info.itemsize); }
};

inline ByteView byte_view(const py::object& obj, const char* what, bool writable) {
    if (!PyObject_CheckBuffer(obj.ptr()))
        throw py::type_error(std::string(what) + " must be bytes-like (bytes, bytearray, "
                             "memoryview or a numpy array), not " +
                             std::string(py::str(py::type::of(obj).attr("__name__"))));
    py::buffer buf = py::reinterpret_borrow<py::buffer>(obj);
    py::buffer_info info = buf.request(writable);
    if (info.ndim > 0) {
        // C-contiguous check: strides must match a packed row-major layout.
        py::ssize_t expect = info.itemsize;
        for (py::ssize_t d = info.ndim - 1; d >= 0; --d) {
            if (info.shape[d] > 1 && info.strides[d] != expect)
                throw py::value_error(std::string(what) + " must be C-contiguous");
            expect *= info.shape[d];
        }
    }
    return ByteView{std::move(info)};
}

}  // namespace medveil::bindings

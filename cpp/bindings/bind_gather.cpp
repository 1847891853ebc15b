// Binding of the gather kernel: one output buffer (and its SHA-256) from a file's parts.
//
// The parts are checked and held under the GIL (a held view keeps a bytearray from being
// resized or freed); the new bytes object is not yet shared with anyone, so it is filled
// without the GIL.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "buffer.hpp"
#include "medveil/gather.hpp"

namespace py = pybind11;
using medveil::bindings::byte_view;
using medveil::bindings::ByteView;

namespace {

// Below this a file's bytes fit in a few pages: neither the GIL's release nor the
// huge-page hint pays.
constexpr std::size_t kReleaseGilAt = std::size_t{64} << 10;
constexpr std::size_t kHugeAt = std::size_t{4} << 20;

}  // namespace

void bind_gather(py::module_& m) {
    m.def(
        "gather",
        [](const py::sequence& parts, bool hash) {
            std::vector<ByteView> views;
            views.reserve(parts.size());
            std::size_t total = 0;
            for (std::size_t i = 0; i < parts.size(); ++i) {
                const std::string what = "parts[" + std::to_string(i) + "]";
                views.push_back(byte_view(parts[i], what.c_str(), false));
                total += views.back().size();
            }
            std::vector<medveil::gather::Part> list;
            list.reserve(views.size());
            for (const auto& v : views) list.push_back({v.data(), v.size()});
            PyObject* raw = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(total));
            if (raw == nullptr) throw py::error_already_set();
            py::bytes out = py::reinterpret_steal<py::bytes>(raw);
            auto* dst = reinterpret_cast<std::uint8_t*>(PyBytes_AS_STRING(raw));
            std::uint8_t digest[32];
            auto run = [&] {
                if (total >= kHugeAt) medveil::gather::advise_huge_pages(dst, total);
                medveil::gather::gather(list.data(), list.size(), dst, hash ? digest : nullptr);
            };
            if (total >= kReleaseGilAt) {
                py::gil_scoped_release release;
                run();
            } else {
                run();
            }
            py::object hex = py::none();
            if (hash) {
                static const char kHex[] = "0123456789abcdef";
                char text[64];
                for (int i = 0; i < 32; ++i) {
                    text[2 * i] = kHex[digest[i] >> 4];
                    text[2 * i + 1] = kHex[digest[i] & 15];
                }
                hex = py::str(text, 64);
            }
            return py::make_tuple(out, hex);
        },
        py::arg("parts"), py::arg("hash") = true,
        "(bytes, sha256 hex or None): the parts (bytes-like) joined in order into one new\n"
        "bytes object, and with hash=True the SHA-256 (OpenSSL) of those very bytes,\n"
        "computed in the same pass.");
}

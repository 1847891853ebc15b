// Bindings of SHA-256 and HMAC-SHA256 (OpenSSL's libcrypto).
//
// Every input is checked under the GIL (bytes-like, C-contiguous); the hash then runs
// without it while the held buffer views keep every buffer exported (a bytearray cannot be
// resized or freed under it).
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "buffer.hpp"
#include "medveil/digest.hpp"

namespace py = pybind11;
using medveil::bindings::byte_view;
using medveil::bindings::ByteView;

namespace {

// Below this many bytes releasing and retaking the GIL costs more than the hash itself
// (hashlib draws the same line at 2 KiB).
constexpr std::size_t kReleaseGilAt = 2048;

py::bytes digest_bytes(const std::uint8_t (&out)[32]) {
    return py::bytes(reinterpret_cast<const char*>(out), 32);
}

std::vector<ByteView> views_of(const py::object& data) {
    std::vector<ByteView> views;
    if (PyObject_CheckBuffer(data.ptr())) {
        views.push_back(byte_view(data, "data", false));
        return views;
    }
    if (!py::isinstance<py::list>(data) && !py::isinstance<py::tuple>(data))
        throw py::type_error("data must be bytes-like or a list/tuple of bytes-like objects, "
                             "not " + std::string(py::str(py::type::of(data).attr("__name__"))));
    const py::sequence seq = py::reinterpret_borrow<py::sequence>(data);
    views.reserve(seq.size());
    for (std::size_t i = 0; i < seq.size(); ++i) {
        const std::string what = "data[" + std::to_string(i) + "]";
        views.push_back(byte_view(seq[i], what.c_str(), false));
    }
    return views;
}

}  // namespace

void bind_digest(py::module_& m) {
    m.def(
        "sha256",
        [](const py::object& data) {
            const std::vector<ByteView> views = views_of(data);
            std::size_t total = 0;
            for (const auto& v : views) total += v.size();
            std::uint8_t out[32];
            auto run = [&] {
                if (views.size() == 1) {
                    medveil::digest::sha256(views[0].data(), views[0].size(), out);
                    return;
                }
                medveil::digest::Sha256 h;
                for (const auto& v : views) h.update(v.data(), v.size());
                h.final(out);
            };
            if (total >= kReleaseGilAt) {
                py::gil_scoped_release release;
                run();
            } else {
                run();
            }
            return digest_bytes(out);
        },
        py::arg("data"),
        "SHA-256 (OpenSSL) of a bytes-like object, or of the concatenation of a list/tuple\n"
        "of them (hashed in order, never joined); 32 bytes.");
    m.def(
        "hmac_sha256",
        [](const py::object& key, const py::object& data) {
            const ByteView k = byte_view(key, "key", false);
            const ByteView d = byte_view(data, "data", false);
            std::uint8_t out[32];
            if (d.size() >= kReleaseGilAt) {
                py::gil_scoped_release release;
                medveil::digest::hmac_sha256(k.data(), k.size(), d.data(), d.size(), out);
            } else {
                medveil::digest::hmac_sha256(k.data(), k.size(), d.data(), d.size(), out);
            }
            return digest_bytes(out);
        },
        py::arg("key"), py::arg("data"),
        "HMAC-SHA256 (RFC 2104, OpenSSL) of data under key, both bytes-like; 32 bytes.");
}

// Bindings of ChaCha20, Poly1305, ChaCha20-Poly1305 and the age payload kernel.
//
// Every input is any C-contiguous bytes-like object (bytes, bytearray, memoryview, numpy);
// every `out` is a writable one, which may be the input itself (in place) but must not
// overlap it otherwise. Lengths are checked here, under the GIL; the kernels then run
// without it while the buffer_info objects keep every buffer exported (so a bytearray
// cannot be resized or freed under them).
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "buffer.hpp"
#include "medveil/aead.hpp"
#include "medveil/age.hpp"
#include "medveil/chacha20.hpp"
#include "medveil/poly1305.hpp"

namespace py = pybind11;
using medveil::bindings::byte_view;
using medveil::bindings::ByteView;

namespace {

ByteView fixed(const py::object& obj, const char* what, std::size_t size) {
    ByteView v = byte_view(obj, what, false);
    if (v.size() != size)
        throw py::value_error(std::string(what) + " must be " + std::to_string(size) +
                              " bytes, got " + std::to_string(v.size()));
    return v;
}

ByteView writable(const py::object& obj, const char* what) {
    if (PyObject_CheckBuffer(obj.ptr())) {
        Py_buffer probe;
        if (PyObject_GetBuffer(obj.ptr(), &probe, PyBUF_WRITABLE | PyBUF_STRIDES) != 0) {
            PyErr_Clear();
            throw py::type_error(std::string(what) + " must be a writable buffer (bytearray, "
                                 "numpy array, memoryview of one), not read-only " +
                                 std::string(py::str(py::type::of(obj).attr("__name__"))));
        }
        PyBuffer_Release(&probe);
    }
    return byte_view(obj, what, true);
}

// out may be exactly `in` (in place) or disjoint from it; a shifted overlap would make the
// kernel read bytes it has already overwritten.
void require_same_or_disjoint(const ByteView& in, const ByteView& out, std::size_t out_len) {
    const auto a = reinterpret_cast<std::uintptr_t>(in.data());
    const auto b = reinterpret_cast<std::uintptr_t>(out.data());
    if (a == b || in.size() == 0 || out_len == 0) return;
    if (a < b + out_len && b < a + in.size())
        throw py::value_error("out overlaps the input at a different offset; pass the same "
                              "buffer (in place) or a separate one");
}

void require_disjoint(const ByteView& in, const ByteView& out) {
    const auto a = reinterpret_cast<std::uintptr_t>(in.data());
    const auto b = reinterpret_cast<std::uintptr_t>(out.data());
    if (in.size() == 0 || out.size() == 0) return;
    if (a < b + out.size() && b < a + in.size())
        throw py::value_error("out must not overlap the input for the age chunk kernels");
}

std::uint32_t counter_arg(const py::int_& counter) {
    const long long c = PyLong_AsLongLong(counter.ptr());
    if (c == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        throw py::value_error("counter must be in 0 .. 2**32 - 1");
    }
    if (c < 0 || c > 0xFFFFFFFFLL) throw py::value_error("counter must be in 0 .. 2**32 - 1");
    return static_cast<std::uint32_t>(c);
}

[[noreturn]] void raise_auth(const std::string& msg) {
    py::object cls = py::module_::import("medveil.errors").attr("AuthenticationError");
    PyErr_SetString(cls.ptr(), msg.c_str());
    throw py::error_already_set();
}

const char* kAuthMsg =
    "ChaCha20-Poly1305 authentication failed: wrong key, nonce or associated data, or the "
    "ciphertext or tag was modified; nothing was decrypted";

// A bytes object of n bytes to fill before anyone else sees it.
py::bytes new_bytes(std::size_t n, std::uint8_t** data) {
    PyObject* b = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(n));
    if (b == nullptr) throw py::error_already_set();
    *data = reinterpret_cast<std::uint8_t*>(PyBytes_AS_STRING(b));
    return py::reinterpret_steal<py::bytes>(b);
}

}  // namespace

void bind_crypto(py::module_& m) {
    auto c = m.def_submodule("crypto", "ChaCha20, Poly1305 and the ChaCha20-Poly1305 AEAD");
    c.attr("KEY_BYTES") = medveil::kAeadKeyBytes;
    c.attr("NONCE_BYTES") = medveil::kAeadNonceBytes;
    c.attr("TAG_BYTES") = medveil::kAeadTagBytes;
    c.attr("AGE_CHUNK") = medveil::kAgeChunk;
    c.attr("AGE_SEALED_CHUNK") = medveil::kAgeSealedChunk;

    c.def(
        "chacha20_block",
        [](const py::object& key, const py::int_& counter, const py::object& nonce) {
            ByteView k = fixed(key, "key", 32), n = fixed(nonce, "nonce", 12);
            std::uint8_t block[64];
            medveil::chacha20_block(k.data(), counter_arg(counter), n.data(), block);
            py::bytes out(reinterpret_cast<const char*>(block), 64);
            medveil::secure_wipe(block, sizeof block);
            return out;
        },
        py::arg("key"), py::arg("counter"), py::arg("nonce"),
        "One 64-byte ChaCha20 block (RFC 8439 section 2.3).");

    c.def(
        "chacha20_xor",
        [](const py::object& key, const py::object& nonce, const py::object& data,
           const py::int_& counter, const py::object& out) -> py::object {
            ByteView k = fixed(key, "key", 32), n = fixed(nonce, "nonce", 12);
            ByteView in = byte_view(data, "data", false);
            const std::uint32_t ctr = counter_arg(counter);
            const std::size_t len = in.size();
            if (out.is_none()) {
                std::uint8_t* dst = nullptr;
                py::bytes result = new_bytes(len, &dst);
                {
                    // Safe without the GIL: `in` keeps data exported and `result` is private.
                    py::gil_scoped_release release;
                    medveil::chacha20_xor(k.data(), n.data(), ctr, in.data(), dst, len);
                }
                return std::move(result);
            }
            ByteView o = writable(out, "out");
            if (o.size() != len)
                throw py::value_error("out must be exactly len(data) = " + std::to_string(len) +
                                      " bytes, got " + std::to_string(o.size()));
            require_same_or_disjoint(in, o, len);
            {
                // Safe without the GIL: both buffers stay exported for the whole call.
                py::gil_scoped_release release;
                medveil::chacha20_xor(k.data(), n.data(), ctr, in.data(), o.mutable_data(), len);
            }
            return py::none();
        },
        py::arg("key"), py::arg("nonce"), py::arg("data"), py::kw_only(),
        py::arg("counter") = py::int_(0), py::arg("out") = py::none(),
        "data XOR the ChaCha20 keystream from block `counter` (unauthenticated); returns bytes, "
        "or writes into `out` and returns None.");

    c.def(
        "chacha20_keystream",
        [](const py::object& key, const py::object& nonce, py::ssize_t length,
           const py::int_& counter) {
            ByteView k = fixed(key, "key", 32), n = fixed(nonce, "nonce", 12);
            if (length < 0) throw py::value_error("length must be >= 0");
            const std::uint32_t ctr = counter_arg(counter);
            std::uint8_t* dst = nullptr;
            py::bytes result = new_bytes(static_cast<std::size_t>(length), &dst);
            {
                // Safe without the GIL: key and nonce stay exported, `result` is private.
                py::gil_scoped_release release;
                // in == nullptr: the core writes the keystream itself (the CSPRNG's path).
                medveil::chacha20_xor(k.data(), n.data(), ctr, nullptr, dst,
                                      static_cast<std::size_t>(length));
            }
            return result;
        },
        py::arg("key"), py::arg("nonce"), py::arg("length"), py::kw_only(),
        py::arg("counter") = py::int_(0),
        "`length` bytes of ChaCha20 keystream from block `counter` (unauthenticated).");

    c.def(
        "poly1305",
        [](const py::object& key, const py::object& data) {
            ByteView k = fixed(key, "key", 32);
            ByteView in = byte_view(data, "data", false);
            std::uint8_t tag[16];
            {
                // Safe without the GIL: both buffers stay exported for the whole call.
                py::gil_scoped_release release;
                medveil::poly1305(k.data(), in.data(), in.size(), tag);
            }
            return py::bytes(reinterpret_cast<const char*>(tag), 16);
        },
        py::arg("key"), py::arg("data"),
        "Poly1305 tag of data under a one-time 32-byte key (RFC 8439 section 2.5).");

    c.def(
        "aead_seal",
        [](const py::object& key, const py::object& nonce, const py::object& data,
           const py::object& aad, const py::object& out) -> py::object {
            ByteView k = fixed(key, "key", 32), n = fixed(nonce, "nonce", 12);
            ByteView in = byte_view(data, "data", false);
            ByteView ad = byte_view(aad, "aad", false);
            const std::size_t len = in.size();
            if (static_cast<std::uint64_t>(len) > medveil::kAeadMaxBytes)
                throw py::value_error("data is longer than ChaCha20-Poly1305 allows "
                                      "(274,877,906,880 bytes); split it");
            if (out.is_none()) {
                std::uint8_t* dst = nullptr;
                py::bytes result = new_bytes(len + 16, &dst);
                {
                    // Safe without the GIL: inputs stay exported and `result` is private.
                    py::gil_scoped_release release;
                    medveil::aead_seal(k.data(), n.data(), ad.data(), ad.size(), in.data(), len,
                                       dst, dst + len);
                }
                return std::move(result);
            }
            ByteView o = writable(out, "out");
            if (o.size() != len + 16)
                throw py::value_error("out must be len(data) + 16 = " + std::to_string(len + 16) +
                                      " bytes (ciphertext then tag), got " +
                                      std::to_string(o.size()));
            require_same_or_disjoint(in, o, len + 16);
            require_disjoint(ad, o);
            {
                // Safe without the GIL: every buffer stays exported for the whole call.
                py::gil_scoped_release release;
                medveil::aead_seal(k.data(), n.data(), ad.data(), ad.size(), in.data(), len,
                                   o.mutable_data(), o.mutable_data() + len);
            }
            return py::none();
        },
        py::arg("key"), py::arg("nonce"), py::arg("data"), py::kw_only(),
        py::arg("aad") = py::bytes(), py::arg("out") = py::none(),
        "ChaCha20-Poly1305 seal: ciphertext || 16-byte tag, as bytes or written into `out`.");

    c.def(
        "aead_open",
        [](const py::object& key, const py::object& nonce, const py::object& data,
           const py::object& aad, const py::object& out) -> py::object {
            ByteView k = fixed(key, "key", 32), n = fixed(nonce, "nonce", 12);
            ByteView in = byte_view(data, "data", false);
            ByteView ad = byte_view(aad, "aad", false);
            if (in.size() < 16)
                raise_auth("ciphertext is " + std::to_string(in.size()) +
                           " bytes, shorter than the 16-byte tag: truncated or not sealed");
            const std::size_t len = in.size() - 16;
            if (static_cast<std::uint64_t>(len) > medveil::kAeadMaxBytes)
                throw py::value_error("ciphertext is longer than ChaCha20-Poly1305 allows");
            bool ok = false;
            if (out.is_none()) {
                std::uint8_t* dst = nullptr;
                py::bytes result = new_bytes(len, &dst);
                {
                    // Safe without the GIL: inputs stay exported and `result` is private.
                    py::gil_scoped_release release;
                    ok = medveil::aead_open(k.data(), n.data(), ad.data(), ad.size(), in.data(),
                                            len, in.data() + len, dst);
                }
                if (!ok) raise_auth(kAuthMsg);
                return std::move(result);
            }
            ByteView o = writable(out, "out");
            if (o.size() != len)
                throw py::value_error("out must be len(ciphertext) - 16 = " + std::to_string(len) +
                                      " bytes, got " + std::to_string(o.size()));
            require_same_or_disjoint(in, o, len);
            require_disjoint(ad, o);
            {
                // Safe without the GIL: every buffer stays exported for the whole call.
                py::gil_scoped_release release;
                ok = medveil::aead_open(k.data(), n.data(), ad.data(), ad.size(), in.data(), len,
                                        in.data() + len, o.mutable_data());
            }
            if (!ok) raise_auth(kAuthMsg);
            return py::none();
        },
        py::arg("key"), py::arg("nonce"), py::arg("data"), py::kw_only(),
        py::arg("aad") = py::bytes(), py::arg("out") = py::none(),
        "ChaCha20-Poly1305 open of ciphertext || tag, reading each input byte once; raises "
        "AuthenticationError on any mismatch, with `out` wiped (in place: holding the "
        "ciphertext again).");

    c.def("age_sealed_size", &medveil::age_sealed_size, py::arg("length"), py::arg("final"),
          "Bytes that `length` plaintext bytes take as sealed age chunks.");

    c.def(
        "age_seal_chunks",
        [](const py::object& key, std::uint64_t first_index, const py::object& data,
           const py::object& out, bool final, unsigned threads) {
            ByteView k = fixed(key, "payload key", 32);
            ByteView in = byte_view(data, "data", false);
            ByteView o = writable(out, "out");
            const std::size_t len = in.size();
            if (!final && len % medveil::kAgeChunk != 0)
                throw py::value_error("a non-final run of age chunks must be a multiple of "
                                      "65536 bytes, got " + std::to_string(len));
            const std::size_t need = medveil::age_sealed_size(len, final);
            if (o.size() < need)
                throw py::value_error("out must hold at least " + std::to_string(need) +
                                      " bytes, got " + std::to_string(o.size()));
            require_disjoint(in, o);
            std::size_t written = 0;
            {
                // Safe without the GIL: both buffers stay exported for the whole call.
                py::gil_scoped_release release;
                written = medveil::age_seal_chunks(k.data(), first_index, in.data(), len, final,
                                                   o.mutable_data(), threads);
            }
            return written;
        },
        py::arg("key"), py::arg("first_index"), py::arg("data"), py::arg("out"), py::kw_only(),
        py::arg("final"), py::arg("threads") = 0,
        "Seal data as age STREAM chunks first_index, ... into out; returns bytes written.");

    c.def(
        "age_open_chunks",
        [](const py::object& key, std::uint64_t first_index, const py::object& data,
           const py::object& out, bool final, unsigned threads) {
            ByteView k = fixed(key, "payload key", 32);
            ByteView in = byte_view(data, "data", false);
            ByteView o = writable(out, "out");
            const std::size_t len = in.size();
            if (!final && len % medveil::kAgeSealedChunk != 0)
                throw py::value_error("a non-final run of sealed age chunks must be a multiple "
                                      "of 65552 bytes, got " + std::to_string(len));
            if (o.size() < len)
                throw py::value_error("out must hold at least len(data) = " +
                                      std::to_string(len) + " bytes, got " +
                                      std::to_string(o.size()));
            require_disjoint(in, o);
            medveil::AgeOpenResult r{};
            {
                // Safe without the GIL: both buffers stay exported for the whole call.
                py::gil_scoped_release release;
                r = medveil::age_open_chunks(k.data(), first_index, in.data(), len, final,
                                             o.mutable_data(), threads);
            }
            if (!r.ok)
                raise_auth("age payload chunk " + std::to_string(r.bad_chunk) +
                           " failed authentication: the file was modified, truncated, "
                           "reordered or the key is wrong");
            return r.plain_len;
        },
        py::arg("key"), py::arg("first_index"), py::arg("data"), py::arg("out"), py::kw_only(),
        py::arg("final"), py::arg("threads") = 0,
        "Open sealed age STREAM chunks into out; returns plaintext bytes written, raises "
        "AuthenticationError naming the first bad chunk.");
}

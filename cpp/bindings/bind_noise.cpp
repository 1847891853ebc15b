// _core.noise: the ChaCha20 CSPRNG and the exact samplers. Every sampler checks its
// arguments under the GIL, then releases it and locks the generator for the batch.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "buffer.hpp"
#include "medveil/csprng.hpp"
#include "medveil/laplace.hpp"

namespace py = pybind11;
using medveil::Csprng;
using medveil::bindings::byte_view;
using medveil::bindings::dtype_str;
using medveil::bindings::native_byteorder;
using medveil::bindings::require_inplace;
namespace noise = medveil::noise;

namespace {

py::ssize_t check_size(py::ssize_t size) {
    if (size < 0) throw py::value_error("size must be >= 0, got " + std::to_string(size));
    return size;
}

// The output array: a new one of `size` elements, or the caller's `out`, which must be a
// writable, C-contiguous, native array of the exact dtype (never a silent copy).
template <typename T>
py::array_t<T> output(const py::object& out, py::ssize_t size, const char* want) {
    if (out.is_none()) return py::array_t<T>(check_size(size));
    if (!py::isinstance<py::array>(out))
        throw py::type_error(std::string("out must be a numpy array of dtype ") + want);
    auto a = py::reinterpret_borrow<py::array>(out);
    if (!a.dtype().is(py::dtype::of<T>()) || !native_byteorder(a))
        throw py::type_error(std::string("out must have dtype ") + want + ", got " + dtype_str(a));
    require_inplace(a, "out");
    return py::reinterpret_borrow<py::array_t<T>>(a);
}

noise::Rational rational_arg(std::uint64_t num, std::uint64_t den) {
    if (num == 0 || den == 0 || num > noise::kMaxTerm || den > noise::kMaxTerm)
        throw py::value_error("scale num/den: both must be integers in [1, 2^62]");
    return noise::Rational{num, den};
}

// Runs fn(rng) without the GIL and with the generator locked.
template <typename Fn>
void run_locked(Csprng& rng, Fn&& fn) {
    // Safe without the GIL: the output buffers are held by the caller's py::array objects,
    // the generator by its Python owner, and nothing here touches a Python object.
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(rng.mutex());
    rng.reseed_if_forked();
    fn(rng);
}

}  // namespace

void bind_noise(py::module_& m) {
    auto sub = m.def_submodule("noise", "ChaCha20 CSPRNG and exact Laplace samplers");

    py::class_<Csprng, std::unique_ptr<Csprng>>(sub, "Rng",
        "ChaCha20 fast-key-erasure generator seeded from the operating system.")
        .def(py::init<>(), "A generator seeded from the OS (getrandom / /dev/urandom).")
        .def_static(
            "insecure_from_seed",
            [](const py::object& seed) {
                auto v = byte_view(seed, "seed", false);
                if (v.size() != Csprng::kKeyBytes)
                    throw py::value_error("seed must be exactly 32 bytes, got " +
                                          std::to_string(v.size()));
                return std::make_unique<Csprng>(v.data(), true);
            },
            py::arg("seed"),
            "NOT PRIVATE: a reproducible generator for tests and benchmarks only.")
        .def_property_readonly("deterministic", &Csprng::deterministic,
                               "True for a fixed-seed (test-only, not private) generator.")
        .def_property_readonly("bytes_used", &Csprng::bytes_used,
                               "Keystream bytes handed out or discarded so far (diagnostic).")
        .def(
            "bytes",
            [](Csprng& rng, py::ssize_t n) {
                std::string out(static_cast<std::size_t>(check_size(n)), '\0');
                run_locked(rng, [&](Csprng& r) {
                    r.fill(reinterpret_cast<std::uint8_t*>(out.data()), out.size());
                });
                return py::bytes(out);
            },
            py::arg("n"), "n bytes of the generator's output.");

    sub.def(
        "keystream",
        [](const py::object& key, const py::object& nonce, std::uint32_t counter, py::ssize_t n) {
            auto k = byte_view(key, "key", false);
            auto nn = byte_view(nonce, "nonce", false);
            if (k.size() != 32) throw py::value_error("key must be 32 bytes");
            if (nn.size() != 12) throw py::value_error("nonce must be 12 bytes");
            std::string out(static_cast<std::size_t>(check_size(n)), '\0');
            medveil::chacha20_keystream(k.data(), nn.data(), counter,
                                        reinterpret_cast<std::uint8_t*>(out.data()), out.size());
            return py::bytes(out);
        },
        py::arg("key"), py::arg("nonce"), py::arg("counter"), py::arg("n"),
        "Raw ChaCha20 keystream (RFC 8439) of (key, nonce) from block counter.");

    sub.def("rational_scale", [](double scale) {
            try {
                auto r = noise::rational_scale(scale);
                return std::make_pair(r.num, r.den);
            } catch (const std::invalid_argument& e) {
                throw py::value_error(e.what());
            }
        },
        py::arg("scale"), "The scale as (num, den) exactly, or rounded up to 2^-62 steps.");

    sub.def("grid_exponent", [](double scale) {
            try {
                return noise::grid_exponent(scale);
            } catch (const std::invalid_argument& e) {
                throw py::value_error(e.what());
            }
        },
        py::arg("scale"), "k such that 2^k is the smallest power of two >= scale / 2^40.");

    sub.def(
        "uniform_below",
        [](Csprng& rng, const py::int_& n, py::ssize_t size, const py::object& out) {
            // n == 2^64 is the full range, passed to the core as 0.
            const py::int_ two64 = py::int_(1).attr("__lshift__")(64);
            if (n.attr("__lt__")(py::int_(1)).cast<bool>() || n.attr("__gt__")(two64).cast<bool>())
                throw py::value_error("n must be in [1, 2^64]");
            const std::uint64_t nn =
                n.attr("__eq__")(two64).cast<bool>() ? 0 : n.cast<std::uint64_t>();
            auto a = output<std::uint64_t>(out, size, "uint64");
            auto* p = a.mutable_data();
            const auto count = static_cast<std::size_t>(a.size());
            run_locked(rng, [&](Csprng& r) { noise::uniform_below(r, nn, p, count); });
            return a;
        },
        py::arg("rng"), py::arg("n"), py::arg("size") = 0, py::kw_only(),
        py::arg("out") = py::none(), "Uniform integers on [0, n) without bias (Lemire).");

    sub.def(
        "bernoulli_exp",
        [](Csprng& rng, std::uint64_t num, std::uint64_t den, py::ssize_t size) {
            if (den == 0 || den > noise::kMaxTerm)
                throw py::value_error("den must be in [1, 2^62]");
            py::array_t<std::uint8_t> a(check_size(size));
            auto* p = a.mutable_data();
            const auto count = static_cast<std::size_t>(a.size());
            run_locked(rng, [&](Csprng& r) { noise::bernoulli_exp(r, num, den, p, count); });
            return a.attr("view")("bool");
        },
        py::arg("rng"), py::arg("num"), py::arg("den"), py::arg("size"),
        "Exact Bernoulli(exp(-num/den)) draws as a bool array.");

    for (const char* name : {"discrete_laplace", "discrete_laplace_cks"}) {
        const bool cks = std::string(name) == "discrete_laplace_cks";
        sub.def(
            name,
            [cks](Csprng& rng, std::uint64_t num, std::uint64_t den, py::ssize_t size,
                  const py::object& out) {
                const auto scale = rational_arg(num, den);
                if (static_cast<double>(num) > noise::kMaxScale * static_cast<double>(den))
                    throw py::value_error("scale above 2^52 is not supported");
                auto a = output<std::int64_t>(out, size, "int64");
                auto* p = a.mutable_data();
                const auto count = static_cast<std::size_t>(a.size());
                run_locked(rng, [&](Csprng& r) {
                    if (cks)
                        noise::discrete_laplace_cks(r, scale, p, count);
                    else
                        noise::discrete_laplace(r, scale, p, count);
                });
                return a;
            },
            py::arg("rng"), py::arg("num"), py::arg("den"), py::arg("size") = 0, py::kw_only(),
            py::arg("out") = py::none(),
            cks ? "Discrete Laplace of scale num/den by the literal CKS 2020 Algorithm 2."
                : "Exact discrete Laplace noise of scale num/den on the integers (int64).");
    }

    sub.def(
        "laplace_on_grid",
        [](Csprng& rng, const py::object& values, double scale, int k, py::ssize_t size,
           const py::object& out) {
            if (!(scale > 0.0) || scale != scale || scale > 1e300)
                throw py::value_error("scale must be a positive finite number");
            if (k < -1000 || k > 1000) throw py::value_error("grid exponent k out of range");
            py::array_t<double, py::array::c_style | py::array::forcecast> x;
            const double* xp = nullptr;
            py::ssize_t n = size;
            if (!values.is_none()) {
                auto arr = py::array::ensure(values);
                if (!arr) throw py::type_error("values must be array-like");
                x = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(arr);
                if (!x) throw py::type_error("values must convert to float64");
                if (x.ndim() != 1)
                    throw py::value_error("values must be 1-d, got ndim=" + std::to_string(x.ndim()));
                xp = x.data();
                n = x.size();
            }
            auto a = output<double>(out, n, "float64");
            if (a.size() != n)
                throw py::value_error("out has " + std::to_string(a.size()) + " elements, need " +
                                      std::to_string(n));
            auto* p = a.mutable_data();
            const auto count = static_cast<std::size_t>(n);
            for (std::size_t i = 0; xp != nullptr && i < count; ++i)
                if (!std::isfinite(xp[i]))
                    throw py::value_error("values must be finite (NaN or inf found); clamp them");
            const double lambda = std::ldexp(scale, -k);
            if (!(lambda <= noise::kMaxGridScale))
                throw py::value_error("scale / 2^k is above 2^44: use a coarser grid (larger k)");
            try {
                (void)noise::rational_scale(lambda);
            } catch (const std::invalid_argument& e) {
                throw py::value_error(std::string("scale / 2^k: ") + e.what());
            }
            run_locked(rng, [&](Csprng& r) { noise::laplace_on_grid(r, xp, count, scale, k, p); });
            return a;
        },
        py::arg("rng"), py::arg("values"), py::arg("scale"), py::arg("k"), py::arg("size") = 0,
        py::kw_only(), py::arg("out") = py::none(),
        "2^k * (round(values / 2^k) + discrete_laplace(scale / 2^k)); values=None means zeros.");
}

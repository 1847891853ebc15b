#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "medveil/dispatch.hpp"

namespace py = pybind11;

void bind_dispatch(py::module_& m) {
    auto d = m.def_submodule("dispatch", "Which SIMD backend the kernels use");
    d.def("active", [] { return std::string(medveil::backend_name(medveil::active_backend())); },
          "Name of the backend the kernels use now.");
    d.def("available", [] {
            std::vector<std::string> out;
            for (auto b : medveil::available_backends()) out.emplace_back(medveil::backend_name(b));
            return out;
        },
        "Backends compiled in and runnable on this CPU, portable first.");
    d.def("set_backend", [](const std::string& name) {
            medveil::set_backend(medveil::backend_from_name(name));
        },
        py::arg("name"), "Force a backend ('scalar', 'avx2' or 'avx512') for all kernels.");
    d.def("cpu", [] {
            const auto& f = medveil::cpu_features();
            py::dict out;
            out["sse2"] = f.sse2;
            out["avx"] = f.avx;
            out["avx2"] = f.avx2;
            out["fma"] = f.fma;
            out["bmi2"] = f.bmi2;
            out["avx512f"] = f.avx512f;
            out["avx512vl"] = f.avx512vl;
            out["avx512bw"] = f.avx512bw;
            out["avx512ifma"] = f.avx512ifma;
            return out;
        },
        "CPU features as the processor and OS report them.");
}

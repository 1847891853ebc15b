#include <pybind11/pybind11.h>

namespace py = pybind11;

void bind_noise(py::module_& m) {
    m.def_submodule("noise", "ChaCha20 CSPRNG and exact Laplace samplers");
}

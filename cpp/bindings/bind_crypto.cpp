#include <pybind11/pybind11.h>

namespace py = pybind11;

void bind_crypto(py::module_& m) {
    m.def_submodule("crypto", "ChaCha20, Poly1305 and the ChaCha20-Poly1305 AEAD");
}

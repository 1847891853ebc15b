// The extension module only registers submodules; each bind_*.cpp owns one concern.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void bind_dispatch(py::module_& m);
void bind_mask(py::module_& m);
void bind_crypto(py::module_& m);
void bind_noise(py::module_& m);
void bind_textscreen(py::module_& m);
void bind_dicomscan(py::module_& m);
void bind_fastpath(py::module_& m);
void bind_digest(py::module_& m);
void bind_termsearch(py::module_& m);
void bind_strict(py::module_& m);
void bind_gather(py::module_& m);

PYBIND11_MODULE(_core, m) {
    m.doc() = "medveil's C++ core: pixel masking, ChaCha20-Poly1305, CSPRNG and noise kernels";
#ifdef MEDVEIL_VERSION
    m.attr("__version__") = MEDVEIL_VERSION;
#endif
    bind_dispatch(m);
    bind_mask(m);
    bind_crypto(m);
    bind_noise(m);
    bind_textscreen(m);
    bind_dicomscan(m);
    bind_fastpath(m);
    bind_digest(m);
    bind_termsearch(m);
    bind_strict(m);
    bind_gather(m);
}

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "buffer.hpp"
#include "medveil/dicomscan.hpp"

namespace py = pybind11;

void bind_dicomscan(py::module_& m) {
    m.def(
        "scan_elements",
        [](const py::object& data, std::size_t pos, std::size_t end, bool implicit,
           const py::array_t<std::uint32_t, py::array::c_style | py::array::forcecast>&
               sq_tags) {
            const auto view = medveil::bindings::byte_view(data, "data", false);
            if (end > view.size())
                throw py::value_error("end " + std::to_string(end) + " is past the data (" +
                                      std::to_string(view.size()) + " bytes)");
            if (pos > end)
                throw py::value_error("pos " + std::to_string(pos) + " is past end " +
                                      std::to_string(end));
            if (sq_tags.ndim() != 1) throw py::value_error("sq_tags must be 1-d");
            const auto* sq = sq_tags.data();
            const auto nsq = static_cast<std::size_t>(sq_tags.size());
            for (std::size_t i = 1; i < nsq; ++i)
                if (sq[i - 1] >= sq[i])
                    throw py::value_error("sq_tags must be sorted and unique");
            medveil::ScanResult result;
            {
                // Only reads the caller's buffer, which the held view keeps alive and fixed.
                py::gil_scoped_release release;
                medveil::scan_elements(view.data(), view.size(), pos, end, implicit, sq, nsq,
                                       result);
            }
            const auto n = static_cast<py::ssize_t>(result.rows.size() / medveil::kScanColumns);
            py::array_t<std::int64_t> rows(
                {n, static_cast<py::ssize_t>(medveil::kScanColumns)});
            if (n) std::memcpy(rows.mutable_data(), result.rows.data(), result.rows.size() * 8);
            py::object error = py::none();
            if (!result.error.empty()) error = py::str(result.error);
            return py::make_tuple(rows, result.end, error);
        },
        py::arg("data"), py::arg("pos"), py::arg("end"), py::arg("implicit"),
        py::arg("sq_tags"),
        "Scan the element headers of a little-endian DICOM data set in data[pos:end].\n\n"
        "Returns (rows, stop, error): an (n, 8) int64 array of element and item rows in\n"
        "document order (see cpp/include/medveil/dicomscan.hpp), where the scan stopped,\n"
        "and None or the fixed reason it could not scan the data set. In Implicit VR the\n"
        "tags in sq_tags (sorted uint32) are sequences.");
}

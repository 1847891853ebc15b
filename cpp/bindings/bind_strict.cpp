// medveil._core.strict: the strict check's row rules (cpp/include/medveil/strictrows.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "buffer.hpp"
#include "medveil/dicomscan.hpp"
#include "medveil/strictrows.hpp"

namespace py = pybind11;

namespace {

using Flags = py::array_t<std::uint8_t, py::array::c_style | py::array::forcecast>;

const std::uint8_t* flags_of(const py::object& obj, const char* what, py::ssize_t n,
                             Flags& keep) {
    if (obj.is_none()) return nullptr;
    keep = Flags::ensure(obj);
    if (!keep) throw py::type_error(std::string(what) + " must be a 1-d array of 0/1 flags");
    if (keep.ndim() != 1 || keep.size() != n)
        throw py::value_error(std::string(what) + " must have one flag per row (" +
                              std::to_string(n) + ")");
    return keep.data();
}

}  // namespace

void bind_strict(py::module_& m) {
    auto sub = m.def_submodule("strict", "The strict structural check's row rules");
    sub.def(
        "check_rows",
        [](const py::object& data,
           const py::array_t<std::int64_t, py::array::c_style>& rows, bool implicit,
           const py::object& text, const py::object& bad_undefined) -> py::object {
            const auto view = medveil::bindings::byte_view(data, "data", false);
            if (rows.ndim() != 2 || rows.shape(1) != static_cast<py::ssize_t>(medveil::kScanColumns))
                throw py::value_error("rows must be an (n, 8) int64 array of scanner rows");
            const py::ssize_t n = rows.shape(0);
            Flags text_keep, bad_keep;
            const auto* text_p = flags_of(text, "text", n, text_keep);
            const auto* bad_p = flags_of(bad_undefined, "bad_undefined", n, bad_keep);
            if (implicit && (text_p == nullptr || bad_p == nullptr))
                throw py::value_error("implicit VR rows need the text and bad_undefined flags");
            medveil::RowsVerdict verdict;
            bool outside = false;
            {
                // Only reads the caller's buffers, which the held views keep alive and fixed.
                py::gil_scoped_release release;
                try {
                    medveil::check_rows(view.data(), view.size(), rows.data(),
                                        static_cast<std::size_t>(n), implicit, text_p, bad_p,
                                        verdict);
                } catch (const std::invalid_argument&) {
                    outside = true;
                }
            }
            if (outside) throw py::value_error("a row points outside the data");
            if (verdict.error.empty()) return py::none();
            return py::make_tuple(verdict.error, verdict.at);
        },
        py::arg("data"), py::arg("rows"), py::arg("implicit"), py::arg("text") = py::none(),
        py::arg("bad_undefined") = py::none(),
        "The first row rule the scanner's rows of data break, as (reason, byte offset), or\n"
        "None. Implicit VR needs per-row flags: text (the dictionary VR is a text VR; in\n"
        "Explicit VR, optional: rows checked as text besides the text VRs) and\n"
        "bad_undefined (an undefined length the dictionary does not make a sequence).\n"
        "ValueError for rows that point outside data (never the scanner's own).");
    sub.def(
        "meta_extent",
        [](const py::object& data) -> py::tuple {
            const auto view = medveil::bindings::byte_view(data, "data", false);
            medveil::MetaExtent found;
            medveil::meta_extent(view.data(), view.size(), found);
            if (!found.error.empty())
                return py::make_tuple(0, 0, py::none(), found.error, found.at);
            py::object ts = py::none();
            if (found.has_syntax)
                ts = py::bytes(reinterpret_cast<const char*>(view.data() + found.ts_start),
                               found.ts_end - found.ts_start);
            return py::make_tuple(found.start, found.pos, ts, py::none(), 0);
        },
        py::arg("data"),
        "The file meta's extent: (meta start, data set start, Transfer Syntax UID bytes with\n"
        "trailing NULs and spaces cut or None, None, 0), or (0, 0, None, reason, byte offset)\n"
        "for the first finding of strict.dataset_offset's checks, in the same order.");
}

// Binding of the native multi-pattern matcher (medveil::termsearch) used by
// python/medveil/verify/matcher.py. Bytes modes take bytes-like patterns and haystacks;
// the text mode takes str, searches their UTF-8 and answers in code point offsets, with
// Python's own str.isalnum deciding what a word character is outside ASCII.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <stdexcept>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "buffer.hpp"
#include "medveil/termsearch.hpp"

namespace py = pybind11;
using medveil::bindings::byte_view;
using medveil::termsearch::Automaton;
using medveil::termsearch::Match;
using medveil::termsearch::Mode;

namespace {

// Below this many bytes releasing and retaking the GIL costs more than the search.
constexpr std::size_t kReleaseGilAt = 4096;

// matcher.SPACELESS: scripts written without spaces, whose letters never make a boundary.
bool spaceless(std::uint32_t c) {
    return (c >= 0x0E00 && c <= 0x0E7F) || (c >= 0x1100 && c <= 0x11FF) ||
           (c >= 0x3040 && c <= 0x30FF) || (c >= 0x31F0 && c <= 0x31FF) ||
           (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x4E00 && c <= 0x9FFF) ||
           (c >= 0xAC00 && c <= 0xD7AF) || (c >= 0xF900 && c <= 0xFAFF) ||
           (c >= 0xFF66 && c <= 0xFF9F) || (c >= 0x20000 && c <= 0x2FFFF);
}

// The text rule of matcher.py: ch.isalnum() and not spaceless. Py_UNICODE_ISALNUM reads
// CPython's static Unicode tables only, so it is safe without the GIL.
bool text_word(std::uint32_t c) {
    if (c > 0x10FFFF || spaceless(c)) return false;
    return Py_UNICODE_ISALNUM(static_cast<Py_UCS4>(c)) != 0;
}

Mode mode_of(const std::string& name) {
    if (name == "word") return Mode::kWord;
    if (name == "utf16") return Mode::kWordUtf16;
    if (name == "substring") return Mode::kSubstring;
    if (name == "text") return Mode::kWordUtf8;
    throw py::value_error("mode must be 'word', 'utf16', 'substring' or 'text', not '" + name +
                          "'");
}

// The UTF-8 of a str, owned by the str (cached on it). Lone surrogates raise
// UnicodeEncodeError: the caller's Python matcher handles such text.
std::pair<const std::uint8_t*, std::size_t> utf8_of(const py::handle& s, const char* what) {
    if (!PyUnicode_Check(s.ptr()))
        throw py::type_error(std::string(what) + " must be str in text mode, not " +
                             std::string(py::str(py::type::of(s).attr("__name__"))));
    Py_ssize_t n = 0;
    const char* p = PyUnicode_AsUTF8AndSize(s.ptr(), &n);
    if (p == nullptr) throw py::error_already_set();
    return {reinterpret_cast<const std::uint8_t*>(p), static_cast<std::size_t>(n)};
}

class PyAutomaton {
public:
    PyAutomaton(const py::sequence& patterns, const std::string& mode_name)
        : mode_(mode_of(mode_name)) {
        std::vector<std::vector<std::uint8_t>> pats;
        pats.reserve(patterns.size());
        for (std::size_t i = 0; i < patterns.size(); ++i) {
            const py::object p = patterns[i];
            const std::string what = "patterns[" + std::to_string(i) + "]";
            if (mode_ == Mode::kWordUtf8) {
                auto [d, n] = utf8_of(p, what.c_str());
                pats.emplace_back(d, d + n);
            } else {
                if (PyUnicode_Check(p.ptr()))
                    throw py::type_error(what + " must be bytes-like in mode '" + mode_name +
                                         "', not str");
                const auto v = byte_view(p, what.c_str(), false);
                pats.emplace_back(v.data(), v.data() + v.size());
            }
        }
        try {
            auto_ = std::make_shared<Automaton>(pats, mode_, &text_word);
        } catch (const std::length_error& e) {
            throw py::value_error(e.what());
        }
        size_ = pats.size();
    }

    py::list find(const py::object& hay) const { return search(hay, false); }

    bool any(const py::object& hay) const { return search(hay, true).size() != 0; }

    std::size_t states() const { return auto_->states(); }
    std::size_t size() const { return size_; }

private:
    py::list search(const py::object& hay, bool first_only) const {
        const std::uint8_t* data = nullptr;
        std::size_t n = 0;
        std::unique_ptr<medveil::bindings::ByteView> view;  // keeps a buffer exported
        bool ascii = true;
        if (mode_ == Mode::kWordUtf8) {
            auto [d, len] = utf8_of(hay, "haystack");
            data = d;
            n = len;
            ascii = PyUnicode_IS_ASCII(hay.ptr()) != 0;
        } else {
            if (PyUnicode_Check(hay.ptr()))
                throw py::type_error("haystack must be bytes-like in a bytes mode, not str");
            view = std::make_unique<medveil::bindings::ByteView>(
                byte_view(hay, "haystack", false));
            data = view->data();
            n = view->size();
        }
        std::vector<Match> found;
        auto run = [&] {
            if (first_only) {
                if (auto_->any(data, n)) found.push_back(Match{0, 0, 0});
            } else {
                found = auto_->find(data, n);
            }
        };
        if (n >= kReleaseGilAt) {
            // The str's UTF-8 or the exported buffer stays alive and unchanged meanwhile.
            py::gil_scoped_release release;
            run();
        } else {
            run();
        }
        py::list out;
        if (first_only) {
            if (!found.empty()) out.append(py::none());
            return out;
        }
        if (!ascii && !found.empty()) to_code_points(data, n, found);
        for (const auto& m : found)
            out.append(py::make_tuple(m.start, m.end, m.pattern));
        return out;
    }

    // Byte offsets of UTF-8 text -> code point offsets (a str's indices), in one sweep.
    static void to_code_points(const std::uint8_t* p, std::size_t n, std::vector<Match>& ms) {
        std::vector<std::size_t> offs;
        offs.reserve(ms.size() * 2);
        for (const auto& m : ms) {
            offs.push_back(m.start);
            offs.push_back(m.end);
        }
        std::sort(offs.begin(), offs.end());
        offs.erase(std::unique(offs.begin(), offs.end()), offs.end());
        std::vector<std::size_t> chars(offs.size());
        std::size_t pos = 0, count = 0;
        for (std::size_t k = 0; k < offs.size(); ++k) {
            for (; pos < offs[k] && pos < n; ++pos)
                if ((p[pos] & 0xC0) != 0x80) ++count;
            chars[k] = count;
        }
        auto conv = [&](std::size_t off) {
            const auto it = std::lower_bound(offs.begin(), offs.end(), off);
            return chars[static_cast<std::size_t>(it - offs.begin())];
        };
        for (auto& m : ms) {
            m.start = conv(m.start);
            m.end = conv(m.end);
        }
    }

    Mode mode_;
    std::shared_ptr<Automaton> auto_;
    std::size_t size_ = 0;
};

py::array_t<std::int64_t> int_array(const std::vector<std::int64_t>& v) {
    py::array_t<std::int64_t> a(static_cast<py::ssize_t>(v.size()));
    if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(std::int64_t));
    return a;
}

const std::uint8_t* code_table(const py::object& t, const char* what) {
    const auto v = byte_view(t, what, false);
    if (v.size() != 65536)
        throw py::value_error(std::string(what) + " must have 65536 one-byte entries");
    return v.data();  // the caller keeps the table alive (a module-level numpy array)
}

}  // namespace

void bind_termsearch(py::module_& m) {
    auto t = m.def_submodule("termsearch", "Aho-Corasick search of learned terms");
    py::class_<PyAutomaton>(t, "Automaton")
        .def(py::init<const py::sequence&, const std::string&>(), py::arg("patterns"),
             py::arg("mode") = "word",
             "Compile patterns. mode: 'word' (folded bytes, [a-z0-9] word bytes), 'utf16'\n"
             "(UTF-16-LE word units), 'substring' (every occurrence) or 'text' (str).")
        .def("find", &PyAutomaton::find, py::arg("haystack"),
             "Sorted (start, end, pattern index) matches: the longest that respects the word\n"
             "boundaries at each start, or every occurrence in 'substring' mode.")
        .def("any", &PyAutomaton::any, py::arg("haystack"),
             "Whether find() would return a match (stops at the first).")
        .def_property_readonly("states", &PyAutomaton::states, "States of the automaton.")
        .def("__len__", &PyAutomaton::size);
    t.def(
        "plan_values",
        [](const py::array_t<std::int64_t, py::array::c_style>& rows,
           const py::array_t<std::int64_t, py::array::c_style>& codes, const py::object& data,
           bool preamble, const py::object& number, const py::object& binary,
           const py::object& substring, std::size_t sq, std::size_t un,
           const py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>& leaves) {
            if (rows.ndim() != 2 || rows.shape(1) != 8)
                throw py::value_error("rows must be an (n, 8) int64 array");
            if (codes.ndim() != 1 || codes.shape(0) != rows.shape(0))
                throw py::value_error("codes must hold one VR code per row");
            if (sq >= 65536 || un >= 65536) throw py::value_error("sq and un are VR codes");
            const auto view = byte_view(data, "data", false);
            medveil::termsearch::CodeTables tables{code_table(number, "number"),
                                                   code_table(binary, "binary"),
                                                   code_table(substring, "substring"), sq, un};
            medveil::termsearch::ValuePlan plan;
            try {
                // Reads the caller's arrays and buffer, which the held objects keep alive.
                py::gil_scoped_release release;
                medveil::termsearch::plan_values(
                    rows.data(), static_cast<std::size_t>(rows.shape(0)), codes.data(),
                    view.data(), view.size(), preamble, tables, leaves.data(),
                    static_cast<std::size_t>(leaves.size()), plan);
            } catch (const std::invalid_argument& e) {
                throw py::value_error(e.what());
            }
            py::list regions;
            for (std::size_t k = 0; k + 3 <= plan.regions.size(); k += 3)
                regions.append(py::make_tuple(plan.regions[k], plan.regions[k + 1],
                                              plan.regions[k + 2]));
            return py::make_tuple(
                int_array(plan.seg_rows), int_array(plan.starts), int_array(plan.ends),
                py::bytes(reinterpret_cast<const char*>(plan.hay.data()), plan.hay.size()),
                regions, int_array(plan.decode), int_array(plan.substring_rows));
        },
        py::arg("rows"), py::arg("codes"), py::arg("data"), py::arg("preamble"),
        py::arg("number"), py::arg("binary"), py::arg("substring"), py::arg("sq"),
        py::arg("un"), py::arg("leaves"),
        "The post-check's plan of a written file from its scanner rows: (searched rows,\n"
        "their starts, ends, the masked folded haystack, its regions, rows to decode too,\n"
        "searched rows of substring VRs). leaves: element rows searched whatever their VR.\n"
        "Mirrors postcheck._plan_python and _masked.");
    t.def(
        "row_values",
        [](const py::object& data, const py::array_t<std::int64_t, py::array::c_style>& rows,
           const py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>& index) {
            if (rows.ndim() != 2 || rows.shape(1) != 8)
                throw py::value_error("rows must be an (n, 8) int64 array");
            if (index.ndim() != 1) throw py::value_error("index must be 1-d");
            const auto view = byte_view(data, "data", false);
            const auto* r = rows.data();
            const auto nrows = rows.shape(0);
            const auto* ix = index.data();
            const auto n = static_cast<std::size_t>(index.size());
            const auto size = static_cast<std::int64_t>(view.size());
            std::size_t total = 0;
            for (std::size_t k = 0; k < n; ++k) {
                const std::int64_t i = ix[k];
                if (i < 0 || i >= nrows) throw py::value_error("index past the rows");
                const std::int64_t a = r[i * 8 + 3], e = r[i * 8 + 5];
                if (a < 0 || e < a || e > size || e - a > 0xFFFFFFFFLL)
                    throw py::value_error("a row's value lies outside the data");
                total += 4 + static_cast<std::size_t>(e - a);
            }
            py::bytes out(nullptr, static_cast<py::ssize_t>(total));
            auto* w = reinterpret_cast<std::uint8_t*>(PyBytes_AS_STRING(out.ptr()));
            for (std::size_t k = 0; k < n; ++k) {
                const std::int64_t i = ix[k];
                const std::int64_t a = r[i * 8 + 3], e = r[i * 8 + 5];
                const auto len = static_cast<std::uint32_t>(e - a);
                for (int b = 0; b < 4; ++b) *w++ = static_cast<std::uint8_t>(len >> (8 * b));
                if (len) std::memcpy(w, view.data() + a, len);
                w += len;
            }
            return out;
        },
        py::arg("data"), py::arg("rows"), py::arg("index"),
        "The values of these scanner rows (data[row[3]:row[5]]), each after its length as\n"
        "4 bytes little-endian, in index order: one key for a set of values.");
    t.def(
        "is_word_char", [](std::uint32_t c) { return text_word(c); }, py::arg("code_point"),
        "The text mode's word-character rule (str.isalnum, minus spaceless scripts).");
}

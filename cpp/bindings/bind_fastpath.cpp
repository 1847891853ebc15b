// The native per-file road's binding: a policy table object filled once from Python, and one
// batch call that processes many files with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "buffer.hpp"
#include "medveil/fastpath.hpp"

namespace py = pybind11;
namespace fp = medveil::fastpath;

namespace {

std::uint16_t vr_of(const std::string& vr, const char* what) {
    if (vr.empty()) return 0;
    if (vr.size() != 2)
        throw py::value_error(std::string(what) + " must be a two-letter VR or '', not " + vr);
    return static_cast<std::uint16_t>(static_cast<std::uint8_t>(vr[0]) |
                                      (static_cast<std::uint8_t>(vr[1]) << 8));
}

std::string vr_text(std::uint16_t vr) {
    std::string s(2, ' ');
    s[0] = static_cast<char>(vr & 0xFF);
    s[1] = static_cast<char>(vr >> 8);
    return s;
}

using VariantTuple = std::tuple<int, int, std::vector<int>, py::bytes, std::string>;

fp::Variant variant_of(const VariantTuple& v) {
    fp::Variant out;
    const int kind = std::get<0>(v);
    if (kind < fp::kFallback || kind > fp::kCache)
        throw py::value_error("variant kind " + std::to_string(kind) + " is not one of 0..6");
    out.kind = static_cast<std::uint8_t>(kind);
    out.report = std::get<1>(v);
    out.notes.assign(std::get<2>(v).begin(), std::get<2>(v).end());
    out.value = std::string(std::get<3>(v));
    out.reason = std::get<4>(v);
    return out;
}

// Column c of flat rows of `cols` values, as a Python list (cheaper than numpy's tolist).
py::list column(const std::vector<std::int64_t>& flat, std::size_t cols, std::size_t c) {
    const std::size_t n = flat.size() / cols;
    py::list out(n);
    for (std::size_t i = 0; i < n; ++i) {
        PyObject* v = PyLong_FromLongLong(flat[i * cols + c]);
        if (v == nullptr) throw py::error_already_set();
        PyList_SET_ITEM(out.ptr(), static_cast<py::ssize_t>(i), v);
    }
    return out;
}

py::array_t<std::int64_t> rows_array(const std::vector<std::int64_t>& flat, py::ssize_t cols) {
    const auto n = static_cast<py::ssize_t>(flat.size()) / cols;
    py::array_t<std::int64_t> arr({n, cols});
    if (n) std::memcpy(arr.mutable_data(), flat.data(), flat.size() * sizeof(std::int64_t));
    return arr;
}

}  // namespace

void bind_fastpath(py::module_& m) {
    auto sub = m.def_submodule("fastpath", "The native per-file de-identification road");
    py::class_<fp::Table, std::shared_ptr<fp::Table>>(sub, "Table",
                                                       "A compiled policy for the native road")
        .def(py::init([](const py::bytes& secret,
                         const py::array_t<std::uint32_t, py::array::c_style |
                                                              py::array::forcecast>& sq_tags,
                         const std::vector<std::string>& well_known,
                         const std::vector<std::uint32_t>& term_tags,
                         const std::vector<std::uint32_t>& catalog_tags,
                         const std::vector<py::bytes>& charsets,
                         const std::vector<std::pair<std::string, int>>& syntaxes,
                         int private_report) {
                 auto t = std::make_shared<fp::Table>();
                 t->secret = std::string(secret);
                 if (t->secret.size() != 32) throw py::value_error("secret must be 32 bytes");
                 if (sq_tags.ndim() != 1) throw py::value_error("sq_tags must be 1-d");
                 t->sq_tags.assign(sq_tags.data(), sq_tags.data() + sq_tags.size());
                 for (std::size_t i = 1; i < t->sq_tags.size(); ++i)
                     if (t->sq_tags[i - 1] >= t->sq_tags[i])
                         throw py::value_error("sq_tags must be sorted and unique");
                 t->well_known.insert(well_known.begin(), well_known.end());
                 t->term_tags = term_tags;
                 t->catalog_tags = catalog_tags;
                 for (const auto& c : charsets) t->charsets.insert(std::string(c));
                 for (const auto& s : syntaxes) {
                     if (s.second < 0 || s.second > 2)
                         throw py::value_error("syntax kind must be 0, 1 or 2");
                     t->syntaxes[s.first] = s.second;
                 }
                 t->private_report = private_report;
                 return t;
             }),
             py::arg("secret"), py::arg("sq_tags"), py::arg("well_known"), py::arg("term_tags"),
             py::arg("catalog_tags"), py::arg("charsets"), py::arg("syntaxes"),
             py::arg("private_report"))
        .def(
            "add_tag",
            [](fp::Table& t, std::uint32_t tag, const std::string& plain_vr,
               const std::string& dict_vr, bool code_meaning,
               const std::vector<std::tuple<std::string, bool, VariantTuple, VariantTuple>>& vrs) {
                std::unique_lock<std::shared_mutex> lock(t.mu);
                fp::TagEntry entry;
                entry.plain_vr = vr_of(plain_vr, "plain_vr");
                entry.dict_vr = vr_of(dict_vr, "dict_vr");
                entry.code_meaning = code_meaning;
                std::vector<int> ids;
                for (const auto& v : vrs) {
                    fp::VrEntry ve;
                    ve.vr = vr_of(std::get<0>(v), "vr");
                    ve.use_empty = std::get<1>(v);
                    ve.v[0] = variant_of(std::get<2>(v));
                    ve.v[1] = variant_of(std::get<3>(v));
                    ve.id = t.next_id++;
                    ids.push_back(ve.id);
                    entry.vrs.push_back(std::move(ve));
                }
                t.tags[tag] = std::move(entry);
                return ids;
            },
            py::arg("tag"), py::arg("plain_vr"), py::arg("dict_vr"), py::arg("code_meaning"),
            py::arg("vrs"),
            "Set a tag's entry: per VR (vr, use_empty, non-empty variant, empty variant),\n"
            "each variant (kind, report, notes, value, reason). Returns the entry ids.")
        .def(
            "cache_put",
            [](fp::Table& t, int entry, bool empty, const py::bytes& fingerprint,
               const py::bytes& value, int kind, int report, const std::vector<int>& notes,
               const py::bytes& out) {
                const std::string fp_text(fingerprint);
                if (fp_text.size() != 32) throw py::value_error("fingerprint must be 32 bytes");
                if (kind != fp::kKeep && kind != fp::kRemove && kind != fp::kEmpty &&
                    kind != fp::kPut)
                    throw py::value_error("cached kind must be keep, remove, empty or put");
                std::string key;
                const auto e = static_cast<std::uint32_t>(entry);
                for (int s = 0; s < 32; s += 8) key.push_back(static_cast<char>((e >> s) & 0xFF));
                key.push_back(static_cast<char>(empty ? 1 : 0));
                key += fp_text;
                key += std::string(value);
                fp::CacheValue cv;
                cv.kind = static_cast<std::uint8_t>(kind);
                cv.report = report;
                cv.notes.assign(notes.begin(), notes.end());
                cv.value = std::string(out);
                std::unique_lock<std::shared_mutex> lock(t.mu);
                if (t.cache.size() >= 200000) t.cache.clear();  // bounded: a long run's memory stays flat
                t.cache[key] = std::move(cv);
            },
            py::arg("entry"), py::arg("empty"), py::arg("fingerprint"), py::arg("value"),
            py::arg("kind"), py::arg("report"), py::arg("notes"), py::arg("out"),
            "Remember Python's answer for one value of one entry under one identity.")
        .def(
            "add_meta",
            [](fp::Table& t, const py::bytes& key, const py::bytes& pre, const py::bytes& post,
               const std::vector<std::pair<std::uint32_t, int>>& taken) {
                fp::MetaTemplate mt;
                mt.pre = std::string(pre);
                mt.post = std::string(post);
                mt.taken.assign(taken.begin(), taken.end());
                std::unique_lock<std::shared_mutex> lock(t.mu);
                if (t.metas.size() >= 256) t.metas.clear();
                t.metas[std::string(key)] = std::move(mt);
            },
            py::arg("key"), py::arg("pre"), py::arg("post"), py::arg("taken"),
            "Remember the output file meta (before and after the SOP Instance UID) for a key.")
        .def(
            "add_marks",
            [](fp::Table& t, const std::vector<std::pair<std::uint32_t, py::bytes>>& marks) {
                std::vector<std::pair<std::uint32_t, std::string>> set;
                for (const auto& mk : marks) {
                    if (!set.empty() && set.back().first >= mk.first)
                        throw py::value_error("marks must be in ascending tag order");
                    set.emplace_back(mk.first, std::string(mk.second));
                }
                std::unique_lock<std::shared_mutex> lock(t.mu);
                t.marks.push_back(std::move(set));
                return static_cast<int>(t.marks.size() - 1);
            },
            py::arg("marks"), "Register the encoded elements merged into outputs; returns its id.")
        .def("cache_size",
             [](const fp::Table& t) {
                 std::shared_lock<std::shared_mutex> lock(t.mu);
                 return t.cache.size();
             })
        .def(
            "meta_key",
            [](const fp::Table&, const py::object& data, const py::array_t<std::int64_t>& rows) {
                const auto view = medveil::bindings::byte_view(data, "data", false);
                if (rows.ndim() != 2 || rows.shape(1) != 6)
                    throw py::value_error("rows must be an (n, 6) int64 array");
                std::vector<std::int64_t> flat(rows.data(), rows.data() + rows.size());
                return py::bytes(fp::meta_key(view.data(), view.size(), flat));
            },
            py::arg("data"), py::arg("rows"), "The file meta's template key for these rows.");

    sub.def(
        "run",
        [](const std::shared_ptr<fp::Table>& table, const py::list& inputs,
           const py::object& marks, const py::object& pixels, int threads, bool build,
           bool hash) {
            if (!table) throw py::value_error("table is None");
            const std::size_t n = inputs.size();
            std::vector<medveil::bindings::ByteView> views;
            std::vector<medveil::bindings::ByteView> pix_views;
            views.reserve(n);
            std::vector<fp::Input> ins(n);
            std::vector<int> mark_ids;
            if (!marks.is_none()) {
                mark_ids = marks.cast<std::vector<int>>();
                if (mark_ids.size() != n)
                    throw py::value_error("marks must have one id per input");
            }
            py::list pix_list;
            if (!pixels.is_none()) {
                pix_list = pixels.cast<py::list>();
                if (pix_list.size() != n)
                    throw py::value_error("pixels must have one entry (or None) per input");
            }
            pix_views.reserve(n);
            for (std::size_t i = 0; i < n; ++i) {
                views.push_back(medveil::bindings::byte_view(inputs[i], "input", false));
                ins[i].data = views.back().data();
                ins[i].size = views.back().size();
                ins[i].build = build;
                ins[i].hash = hash;
                if (!mark_ids.empty()) ins[i].marks = mark_ids[i];
                if (!pixels.is_none() && !pix_list[i].is_none()) {
                    pix_views.push_back(
                        medveil::bindings::byte_view(pix_list[i], "pixels", false));
                    ins[i].pixels = pix_views.back().data();
                    ins[i].pixels_size = pix_views.back().size();
                }
            }
            if (threads < 0 || threads > 256)
                throw py::value_error("threads must be between 0 and 256");
            std::vector<fp::Result> results;
            {
                // The held views keep every buffer alive; the batch only reads them.
                py::gil_scoped_release release;
                fp::process_batch(*table, ins, results, threads);
            }
            py::list out;
            for (auto& r : results) {
                py::list catalog;
                for (auto& c : r.catalog)
                    catalog.append(py::make_tuple(c.first, vr_text(c.second.first),
                                                  py::bytes(c.second.second)));
                std::vector<std::int64_t> misses;
                for (auto& mi : r.misses)
                    misses.insert(misses.end(), {mi.entry, mi.empty, mi.vstart, mi.vend});
                py::object reason = py::none();
                if (!r.reason.empty()) reason = py::str(r.reason);
                out.append(py::make_tuple(
                    r.status, reason, py::bytes(r.head), py::bytes(r.tail), r.pix_start,
                    r.pix_end, r.pix_replaced,
                    py::bytes(reinterpret_cast<const char*>(r.sha.data()), r.sha.size()),
                    py::make_tuple(column(r.taken, 3, 0), column(r.taken, 3, 1),
                                   column(r.taken, 3, 2)),
                    py::cast(r.paths), catalog, rows_array(misses, 4),
                    py::bytes(reinterpret_cast<const char*>(r.fingerprint.data()),
                              r.fingerprint.size()),
                    py::make_tuple(column(r.top, 6, 0), column(r.top, 6, 1),
                                   column(r.top, 6, 3), column(r.top, 6, 4),
                                   column(r.top, 6, 5)),
                    rows_array(r.meta, 6), py::bytes(r.meta_key), r.implicit));
            }
            return out;
        },
        py::arg("table"), py::arg("inputs"), py::arg("marks") = py::none(),
        py::arg("pixels") = py::none(), py::arg("threads") = 1, py::arg("build") = true,
        py::arg("hash") = true,
        "De-identify a batch of files with the GIL released; one result tuple per input:\n"
        "(status, reason, head, tail, pix_start, pix_end, pix_replaced, sha256, taken,\n"
        "paths, catalog, misses, fingerprint, top, meta, meta_key, implicit). taken is\n"
        "(path ids, tags, action ids); top is (tags, VR codes, value starts, lengths,\n"
        "ends) of the top-level elements; status 0 is done, 1 declined (reason), 2 needs\n"
        "Python's answers (misses). With hash=False the sha256 is 32 zero bytes (the\n"
        "caller hashes the output itself).");
}

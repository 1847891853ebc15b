// The post-check's plan of a written file's values (python/medveil/engine/postcheck.py,
// _find_scanned and _masked, are the reference this mirrors step by step): which scanner
// rows are searched, the masked and folded haystack of their bytes, the rows whose bytes
// must also be decoded, and the binary rows searched as substrings.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

#include "medveil/termsearch.hpp"

namespace medveil::termsearch {
namespace {

constexpr std::size_t kCols = 8;
enum Col { kTag = 0, kCode = 1, kStart = 2, kVstart = 3, kLength = 4, kStop = 5, kItems = 6,
           kDepth = 7 };

inline bool pixel_tag(std::int64_t tag) {
    return tag == 0x7FE00010 || tag == 0x7FE00008 || tag == 0x7FE00009;
}

// A-Z to a-z and '^' to ' ' (postcheck._FOLD).
inline std::uint8_t fold(std::uint8_t b) {
    if (b >= 'A' && b <= 'Z') return static_cast<std::uint8_t>(b + 32);
    return b == '^' ? static_cast<std::uint8_t>(' ') : b;
}

}  // namespace

void plan_values(const std::int64_t* rows, std::size_t nrows, const std::int64_t* codes,
                 const std::uint8_t* data, std::size_t n, bool preamble,
                 const CodeTables& tables, const std::int64_t* leaves, std::size_t nleaves,
                 ValuePlan& out) {
    auto at = [&](std::size_t i, Col c) { return rows[i * kCols + c]; };
    std::vector<std::uint8_t> leaf(nrows, 0), textual(nrows, 0);
    std::vector<std::int64_t> un_seqs;
    auto code_of = [&](std::size_t i) -> std::size_t {
        const std::int64_t c = codes[i];
        if (c < 0 || c >= 65536) throw std::invalid_argument("VR code out of range");
        return static_cast<std::size_t>(c);
    };
    for (std::size_t i = 0; i < nrows; ++i) {
        const std::int64_t tag = at(i, kTag);
        if (tag < 0) continue;
        const std::int64_t vs = at(i, kVstart), st = at(i, kStop);
        if (vs < 0 || st < vs || static_cast<std::size_t>(st) > n)
            throw std::invalid_argument("a row's value lies outside the data");
        const std::size_t code = code_of(i);
        const bool value = !pixel_tag(tag) && st > vs;
        const bool opened = at(i, kItems) >= 0;
        if (value && !opened && code != tables.sq && !tables.number[code]) leaf[i] = 1;
        if (value && opened && code == tables.un) un_seqs.push_back(static_cast<std::int64_t>(i));
    }
    for (std::size_t k = 0; k < nleaves; ++k) {
        const std::int64_t r = leaves[k];
        if (r < 0 || static_cast<std::size_t>(r) >= nrows || at(static_cast<std::size_t>(r), kTag) < 0)
            throw std::invalid_argument("an extra leaf is not an element row");
        leaf[static_cast<std::size_t>(r)] = 1;
    }
    // A sequence sent as UN is searched whole when no element lies in its items: the next
    // element row after it is not deeper than it.
    for (const std::int64_t u : un_seqs) {
        const auto i = static_cast<std::size_t>(u);
        std::size_t k = i + 1;
        while (k < nrows && at(k, kTag) < 0) ++k;
        if (k >= nrows || at(k, kDepth) <= at(i, kDepth)) leaf[i] = 1;
    }
    out = ValuePlan{};
    if (preamble) {
        out.seg_rows.push_back(-1);
        out.starts.push_back(0);
        out.ends.push_back(128);
    }
    for (std::size_t i = 0; i < nrows; ++i) {
        if (!leaf[i]) continue;
        out.seg_rows.push_back(static_cast<std::int64_t>(i));
        out.starts.push_back(at(i, kVstart));
        out.ends.push_back(at(i, kStop));
        const std::size_t code = code_of(i);
        if (!tables.binary[code]) textual[i] = 1;
        if (tables.substring[code]) out.substring_rows.push_back(static_cast<std::int64_t>(i));
    }
    for (const std::int64_t u : un_seqs)
        if (!tables.number[code_of(static_cast<std::size_t>(u))]) out.decode.push_back(u);
    if (preamble && n < 128) throw std::invalid_argument("preamble past the data");

    // The masked haystack (postcheck._masked): the stretches between pixel data values,
    // each the file's bytes with all but the searched values zeroed, joined by two zeros.
    if (!out.starts.empty()) {
        const std::int64_t last = *std::max_element(out.ends.begin(), out.ends.end());
        std::vector<std::pair<std::int64_t, std::int64_t>> cuts;
        for (std::size_t i = 0; i < nrows; ++i)
            if (at(i, kTag) >= 0 && pixel_tag(at(i, kTag)) && at(i, kVstart) < last)
                cuts.emplace_back(at(i, kVstart), at(i, kStop));
        std::sort(cuts.begin(), cuts.end());
        cuts.emplace_back(last, last);
        std::int64_t prev = 0, off = 0;
        const std::size_t nseg = out.starts.size();
        for (const auto& [a, b] : cuts) {
            if (a > prev) {
                bool any = false;
                for (std::size_t j = 0; j < nseg; ++j)
                    if (out.starts[j] >= prev && out.ends[j] <= a) {
                        any = true;
                        break;
                    }
                if (any) {
                    if (!out.hay.empty()) out.hay.insert(out.hay.end(), 2, 0);
                    const std::size_t base = out.hay.size();
                    out.hay.resize(base + static_cast<std::size_t>(a - prev), 0);
                    for (std::size_t j = 0; j < nseg; ++j) {
                        const std::int64_t s = out.starts[j], e = out.ends[j];
                        if (s < prev || e > a) continue;
                        for (std::int64_t p = s; p < e; ++p)
                            out.hay[base + static_cast<std::size_t>(p - prev)] =
                                fold(data[p]);
                    }
                    out.regions.push_back(off);
                    out.regions.push_back(prev);
                    out.regions.push_back(a);
                    off += a - prev + 2;
                    // Textual rows holding a byte past ASCII or an ESC in this stretch are
                    // decoded too (their text differs from their bytes).
                    for (std::size_t j = 0; j < nseg; ++j) {
                        const std::int64_t r = out.seg_rows[j];
                        if (r < 0 || !textual[static_cast<std::size_t>(r)]) continue;
                        const std::int64_t s = std::max(out.starts[j], prev);
                        const std::int64_t e = std::min(out.ends[j], a);
                        for (std::int64_t p = s; p < e; ++p)
                            if (data[p] >= 0x80 || data[p] == 0x1B) {
                                out.decode.push_back(r);
                                break;
                            }
                    }
                }
            }
            prev = std::max(prev, b);
        }
    }
    std::sort(out.decode.begin(), out.decode.end());
    out.decode.erase(std::unique(out.decode.begin(), out.decode.end()), out.decode.end());
}

}  // namespace medveil::termsearch

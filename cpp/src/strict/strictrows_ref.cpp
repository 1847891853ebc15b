// Portable implementation of medveil::check_rows (see cpp/include/medveil/strictrows.hpp).
// Every read of the data goes through byte()/u32(), which check the offset first.
#include "medveil/strictrows.hpp"

#include <cstring>

#include <cstdint>
#include <string>

namespace medveil {
namespace {

constexpr std::int64_t kUndefined = 0xFFFFFFFFLL;
constexpr std::size_t kCols = 8;

constexpr std::uint16_t code(const char* vr) {
    return static_cast<std::uint16_t>(static_cast<std::uint8_t>(vr[0]) |
                                      (static_cast<std::uint8_t>(vr[1]) << 8));
}

// strict.py's _TEXT_VRS and _LONG_VRS.
bool is_text_vr(std::uint16_t c) {
    static constexpr std::uint16_t kText[] = {
        code("AE"), code("AS"), code("CS"), code("DA"), code("DS"), code("DT"),
        code("IS"), code("LO"), code("LT"), code("PN"), code("SH"), code("ST"),
        code("TM"), code("UC"), code("UI"), code("UR"), code("UT")};
    for (auto t : kText)
        if (t == c) return true;
    return false;
}

bool is_long_vr(std::uint16_t c) {
    static constexpr std::uint16_t kLong[] = {code("OB"), code("OD"), code("OF"), code("OL"),
                                              code("OV"), code("OW"), code("SQ"), code("UC"),
                                              code("UR"), code("UT"), code("SV"), code("UV"),
                                              code("UN")};
    for (auto t : kLong)
        if (t == c) return true;
    return false;
}

// Control bytes other than TAB, LF, FF, CR and ESC (strict.py's _CONTROL).
bool is_control(std::uint8_t b) {
    return b < 0x20 && b != 0x09 && b != 0x0A && b != 0x0C && b != 0x0D && b != 0x1B;
}

struct Data {
    const std::uint8_t* p;
    std::size_t size;
    std::uint8_t byte(std::int64_t at) const {
        if (at < 0 || static_cast<std::uint64_t>(at) >= size)
            throw std::invalid_argument("a row points outside the data");
        return p[at];
    }
    std::uint32_t u32(std::int64_t at) const {
        if (at < 0 || static_cast<std::uint64_t>(at) + 4 > size)
            throw std::invalid_argument("a row points outside the data");
        return static_cast<std::uint32_t>(p[at]) | (static_cast<std::uint32_t>(p[at + 1]) << 8) |
               (static_cast<std::uint32_t>(p[at + 2]) << 16) |
               (static_cast<std::uint32_t>(p[at + 3]) << 24);
    }
    // _text_has_control: a control byte before the trailing NUL/space padding.
    bool text_has_control(std::int64_t start, std::int64_t end) const {
        if (start < 0 || end < start || static_cast<std::uint64_t>(end) > size)
            throw std::invalid_argument("a row points outside the data");
        while (end > start && (p[end - 1] == 0x00 || p[end - 1] == 0x20)) --end;
        for (std::int64_t i = start; i < end; ++i)
            if (is_control(p[i])) return true;
        return false;
    }
};

}  // namespace

void check_rows(const std::uint8_t* data, std::size_t size, const std::int64_t* rows,
                std::size_t n, bool implicit, const std::uint8_t* text,
                const std::uint8_t* bad_undefined, RowsVerdict& out) {
    out = RowsVerdict{};
    if (implicit && (text == nullptr || bad_undefined == nullptr))
        throw std::invalid_argument("implicit VR rows need the text and bad_undefined flags");
    const Data d{data, size};
    auto row = [&](std::size_t i, std::size_t c) { return rows[i * kCols + c]; };
    auto fail = [&](const char* why, std::int64_t at) {
        out.error = why;
        out.at = at;
    };
    auto is_elem = [&](std::size_t i) { return row(i, 0) >= 0; };
    auto vr = [&](std::size_t i) { return static_cast<std::uint16_t>(row(i, 1) & 0xFFFF); };
    // Rows are checked whole first: every offset a rule may read lies inside the data, in
    // the order the scanner writes them. Anything else is refused before any finding, so
    // that a finding is only ever given where the reference would give the same one.
    const auto sz = static_cast<std::int64_t>(size);
    for (std::size_t i = 0; i < n; ++i) {
        const std::int64_t start = row(i, 2);
        // start <= sz first: start + 8 cannot overflow after it.
        const bool ok = start >= 0 && start <= sz &&
                        (is_elem(i) ? start + 8 <= row(i, 3) && row(i, 3) <= row(i, 5) &&
                                          row(i, 5) <= sz && row(i, 4) >= 0
                                    : start + 8 <= row(i, 3) && row(i, 3) <= sz);
        if (!ok) throw std::invalid_argument("a row points outside the data");
    }
    // Stray item or delimiter tags, then odd lengths (first row of each, in that order).
    for (std::size_t i = 0; i < n; ++i)
        if (is_elem(i) && (row(i, 0) >> 16) == 0xFFFE)
            return fail("item or delimiter tag where an element belongs", row(i, 2));
    for (std::size_t i = 0; i < n; ++i)
        if (is_elem(i) && row(i, 4) != kUndefined && (row(i, 4) & 1) != 0)
            return fail("odd value length", row(i, 2));
    for (std::size_t i = 0; i < n; ++i) {
        if (!is_elem(i) || row(i, 4) == kUndefined) continue;
        // Explicit VR: the text VRs, and the rows the caller flags (UN values of standard
        // text tags, which a reader takes as their dictionary VR).
        const bool is_text = implicit ? text[i] != 0
                                      : is_text_vr(vr(i)) || (text != nullptr && text[i] != 0);
        if (is_text && d.text_has_control(row(i, 3), row(i, 5)))
            return fail("a text value holds control bytes", row(i, 2));
    }
    if (!implicit) {
        for (std::size_t i = 0; i < n; ++i)
            if (is_elem(i) && is_long_vr(vr(i)) &&
                (d.byte(row(i, 2) + 6) | d.byte(row(i, 2) + 7)) != 0)
                return fail("reserved bytes of an element header are not zero", row(i, 2));
    } else {
        for (std::size_t i = 0; i < n; ++i)
            if (is_elem(i) && row(i, 6) >= 0 && row(i, 4) == kUndefined && bad_undefined[i])
                return fail("undefined length outside a sequence", row(i, 2));
    }
    for (std::size_t i = 0; i < n; ++i)
        if (is_elem(i) && row(i, 6) >= 0 && row(i, 4) == kUndefined && d.u32(row(i, 5) - 4) != 0)
            return fail("sequence delimiter with a length", row(i, 5) - 8);
    // Items: an undefined-length one ends with a zero-length delimiter; a defined-length
    // one is filled exactly by its own elements.
    for (std::size_t i = 0; i < n; ++i) {
        if (is_elem(i)) continue;
        const std::int64_t start = row(i, 2), end = row(i, 3), nelems = row(i, 4),
                           depth = row(i, 7);
        if (row(i, 1)) {
            if (d.u32(end - 4) != 0) return fail("item delimiter with a length", end - 8);
            continue;
        }
        std::int64_t last = start + 8, seen = 0;
        for (std::size_t j = i + 1; seen < nelems && j < n; ++j) {
            if (is_elem(j) && row(j, 7) == depth) {
                last = row(j, 5);
                ++seen;
            }
        }
        if (last != end) return fail("item delimiter inside a defined-length item", last);
    }
    // Group lengths: four bytes, not running past the enclosing item (or the data set).
    for (std::size_t i = 0; i < n; ++i) {
        if (!is_elem(i) || (row(i, 0) & 0xFFFF) != 0) continue;
        const std::int64_t start = row(i, 2), depth = row(i, 7);
        if (row(i, 4) != 4) return fail("group length is not 4 bytes", start);
        const std::int64_t declared = d.u32(row(i, 3));
        std::int64_t limit = static_cast<std::int64_t>(size);
        if (depth) {
            for (std::size_t j = i; j-- > 0;) {
                if (!is_elem(j) && row(j, 7) == depth) {
                    limit = row(j, 3);
                    break;
                }
            }
        }
        if (declared > limit - row(i, 5)) return fail("group length runs past its container", start);
    }
}

namespace {

// Explicit VRs with a 2-byte length, and those with 4 reserved bytes and a 4-byte length
// (strict.py's _SHORT_VRS and _LONG_VRS), by their two bytes.
bool meta_short_vr(std::uint8_t a, std::uint8_t b) {
    static const char* const kShort[] = {"AE", "AS", "AT", "CS", "DA", "DS", "DT",
                                         "FL", "FD", "IS", "LO", "LT", "PN", "SH",
                                         "SL", "SS", "ST", "TM", "UI", "UL", "US"};
    for (const char* v : kShort)
        if (a == static_cast<std::uint8_t>(v[0]) && b == static_cast<std::uint8_t>(v[1]))
            return true;
    return false;
}

bool meta_long_vr(std::uint8_t a, std::uint8_t b) {
    static const char* const kLong[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ",
                                        "UC", "UR", "UT", "SV", "UV", "UN"};
    for (const char* v : kLong)
        if (a == static_cast<std::uint8_t>(v[0]) && b == static_cast<std::uint8_t>(v[1]))
            return true;
    return false;
}

std::uint32_t le32(const std::uint8_t* p) {
    return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
           static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}

}  // namespace

void meta_extent(const std::uint8_t* data, std::size_t size, MetaExtent& out) {
    out = MetaExtent{};
    auto fail = [&](const char* why, std::size_t at) {
        out.error = why;
        out.at = static_cast<std::int64_t>(at);
    };
    std::size_t pos = (size >= 132 && std::memcmp(data + 128, "DICM", 4) == 0) ? 132 : 0;
    const std::size_t start = pos;
    if (size - pos < 8 || data[pos] != 0x02 || data[pos + 1] != 0x00) {
        if (pos) fail("no file meta after the preamble", pos);
        return;  // (0, 0): no file meta
    }
    bool has_declared = false;
    std::uint64_t declared = 0;
    const std::size_t n = size;
    while (pos + 8 <= n) {
        const std::uint8_t* h = data + pos;
        const unsigned group = static_cast<unsigned>(h[0]) | static_cast<unsigned>(h[1]) << 8;
        if (group != 2) break;
        const unsigned elem = static_cast<unsigned>(h[2]) | static_cast<unsigned>(h[3]) << 8;
        const unsigned short_len = static_cast<unsigned>(h[6]) | static_cast<unsigned>(h[7]) << 8;
        std::uint64_t length = 0;
        std::size_t vstart = 0;
        if (meta_short_vr(h[4], h[5])) {
            length = short_len;
            vstart = pos + 8;
        } else if (meta_long_vr(h[4], h[5])) {
            if (n - pos < 12) return fail("truncated element header", pos);
            if (short_len) return fail("reserved bytes of an element header are not zero", pos);
            length = le32(h + 8);
            vstart = pos + 12;
        } else {
            return fail("unknown VR", pos);
        }
        if (length == 0xFFFFFFFFu) return fail("undefined length in the file meta", pos);
        const std::uint64_t end = static_cast<std::uint64_t>(vstart) + length;
        if (end > size) return fail("file meta value runs past the end", pos);
        if (length % 2) return fail("odd value length in the file meta", pos);
        if (elem == 0x0000) {
            if (pos != start || length != 4) return fail("misplaced file meta group length", pos);
            has_declared = true;
            declared = static_cast<std::uint64_t>(vstart) + 4 + le32(data + vstart);
        } else if (elem == 0x0010) {
            std::size_t e = static_cast<std::size_t>(end);
            while (e > vstart && (data[e - 1] == 0x00 || data[e - 1] == 0x20)) --e;
            out.has_syntax = true;
            out.ts_start = vstart;
            out.ts_end = e;
        }
        pos = static_cast<std::size_t>(end);
    }
    if (has_declared && declared != pos)
        return fail("file meta group length is not the length of the file meta", start);
    out.start = start;
    out.pos = pos;
}

}  // namespace medveil

// The native per-file road (see cpp/include/medveil/fastpath.hpp). It mirrors, element for
// element, python/medveil/engine/raw.py's walk (RawEngine._walk, _do, _recurse, _sequence,
// _private, _assemble, _file_meta); every case that code handles in a way not ported here
// ends the file with a reason instead.
#include "medveil/fastpath.hpp"

#include <algorithm>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>

#include "medveil/dicom_le.hpp"
#include "medveil/dicomscan.hpp"
#include "medveil/digest.hpp"

namespace medveil::fastpath {

namespace {

using dicom_le::long_vr;
using dicom_le::rd16;
using dicom_le::rd32;
using dicom_le::vr_code;

constexpr std::uint32_t kPixelData = 0x7FE00010;
constexpr std::uint32_t kCharset = 0x00080005;
constexpr std::uint32_t kSopInstance = 0x00080018;
constexpr std::uint32_t kPatientAge = 0x00101010;
constexpr std::uint32_t kCodingScheme = 0x00080102;
constexpr std::uint32_t kUndefined = 0xFFFFFFFFu;
constexpr std::size_t kCols = kScanColumns;

constexpr std::uint16_t kSQ = vr_code('S', 'Q');
constexpr std::uint16_t kUN = vr_code('U', 'N');
constexpr std::uint16_t kLO = vr_code('L', 'O');
constexpr std::uint16_t kPN = vr_code('P', 'N');
constexpr std::uint16_t kUI = vr_code('U', 'I');
constexpr std::uint16_t kSH = vr_code('S', 'H');
constexpr std::uint16_t kUL = vr_code('U', 'L');

void put16(std::string& s, std::uint32_t v) {
    s.push_back(static_cast<char>(v & 0xFF));
    s.push_back(static_cast<char>((v >> 8) & 0xFF));
}
void put32(std::string& s, std::uint32_t v) {
    put16(s, v & 0xFFFF);
    put16(s, v >> 16);
}
void put_tag(std::string& s, std::uint32_t tag) {
    put16(s, tag >> 16);
    put16(s, tag & 0xFFFF);
}

// Ends the file's native road; `status` says whether Python's answers would let it pass.
struct Stop {
    int status;
    std::string reason;
};
[[noreturn]] void decline(const std::string& why) { throw Stop{kDeclined, why}; }

// RawEngine's _header: Little-endian element header, Explicit VR unless implicit.
void header(std::string& s, std::uint32_t tag, std::uint16_t vr, std::uint64_t length,
            bool implicit) {
    put_tag(s, tag);
    if (implicit) {
        put32(s, static_cast<std::uint32_t>(length));
        return;
    }
    put16(s, vr);
    if (long_vr(vr)) {
        put16(s, 0);
        put32(s, static_cast<std::uint32_t>(length));
        return;
    }
    if (length > 0xFFFF) decline("value too long for its VR");
    put16(s, static_cast<std::uint32_t>(length));
}

bool is_pad(std::uint8_t c) { return c == 0 || c == ' '; }

// decide.is_empty: nothing but NUL and space bytes.
bool empty_value(const std::uint8_t* p, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
        if (!is_pad(p[i])) return false;
    return true;
}

std::string tag_text(std::uint32_t tag) {
    static const char* hex = "0123456789ABCDEF";
    std::string s = "(0000,0000)";
    for (int i = 0; i < 4; ++i) {
        s[static_cast<std::size_t>(1 + i)] = hex[(tag >> (28 - 4 * i)) & 0xF];
        s[static_cast<std::size_t>(6 + i)] = hex[(tag >> (12 - 4 * i)) & 0xF];
    }
    return s;
}

// 128-bit unsigned decimal of 16 big-endian bytes (Python's str(int.from_bytes(b, "big"))).
std::string decimal128(const std::uint8_t* b) {
    std::uint32_t limbs[4];
    for (int i = 0; i < 4; ++i) {
        const std::uint8_t* q = b + 4 * i;
        limbs[i] = (static_cast<std::uint32_t>(q[0]) << 24) | (static_cast<std::uint32_t>(q[1]) << 16) |
                   (static_cast<std::uint32_t>(q[2]) << 8) | static_cast<std::uint32_t>(q[3]);
    }
    std::string digits;
    for (;;) {
        bool zero = true;
        std::uint64_t rem = 0;
        for (int i = 0; i < 4; ++i) {
            const std::uint64_t cur = (rem << 32) | limbs[i];
            limbs[i] = static_cast<std::uint32_t>(cur / 10);
            rem = cur % 10;
            if (limbs[i]) zero = false;
        }
        digits.push_back(static_cast<char>('0' + rem));
        if (zero) break;
    }
    std::reverse(digits.begin(), digits.end());
    return digits;
}

// Keyed.uid of one UID under `secret`: "2.25." and the decimal of HMAC-SHA256's first 16
// bytes over "uid\0" + uid. A series' files share most of their UIDs (study, series,
// frame of reference, references), so each thread remembers its last answers; the memo
// is keyed by everything the answer depends on, the secret and the UID, and is emptied
// when the secret changes (another table) or it grows past its bound.
const std::string& remapped(const std::string& secret, const std::string& uid) {
    struct Memo {
        std::string secret;
        std::unordered_map<std::string, std::string> map;
    };
    thread_local Memo memo;
    if (memo.secret != secret || memo.map.size() >= 4096) {
        memo.map.clear();
        memo.secret = secret;
    }
    auto it = memo.map.find(uid);
    if (it != memo.map.end()) return it->second;
    std::string msg = "uid";
    msg.push_back('\0');
    msg += uid;
    std::uint8_t mac[32];
    digest::hmac_sha256(reinterpret_cast<const std::uint8_t*>(secret.data()), secret.size(),
                        reinterpret_cast<const std::uint8_t*>(msg.data()), msg.size(), mac);
    return memo.map.emplace(uid, "2.25." + decimal128(mac)).first->second;
}

struct Elem {
    std::uint32_t tag;
    std::uint16_t code;  // VR written in the file (0: implicit)
    std::uint16_t vr;    // VR as the engine reads it
    std::int64_t start, vstart, length, end, nitems;
    int depth;
};

struct Walker {
    const Table& t;
    const Input& in;
    Result& r;
    const std::uint8_t* d;
    std::size_t n;
    bool implicit = false;
    std::vector<std::int64_t> rows;
    std::size_t nrows = 0;
    std::unordered_map<std::string, std::int64_t> path_ids;
    std::int64_t pixel_row = -1;
    std::string fp_key;  // the fingerprint as a cache-key prefix
    bool missed = false;

    Walker(const Table& table, const Input& input, Result& result)
        : t(table), in(input), r(result), d(input.data), n(input.size) {}

    std::int64_t at(std::size_t row, std::size_t col) const { return rows[row * kCols + col]; }

    Elem elem(std::size_t i) const {
        Elem e{};
        e.tag = static_cast<std::uint32_t>(at(i, 0));
        e.code = static_cast<std::uint16_t>(at(i, 1));
        e.start = at(i, 2);
        e.vstart = at(i, 3);
        e.length = at(i, 4);
        e.end = at(i, 5);
        e.nitems = at(i, 6);
        e.depth = static_cast<int>(at(i, 7));
        e.vr = e.code ? e.code : implicit_vr(e.tag);
        return e;
    }

    // RawEngine._implicit_vr: private creators are LO, else the dictionary's VR, else UN.
    std::uint16_t implicit_vr(std::uint32_t tag) const {
        const std::uint32_t el = tag & 0xFFFF;
        if ((tag >> 16) & 1 && el >= 0x10 && el <= 0xFF) return kLO;
        auto it = t.tags.find(tag);
        if (it == t.tags.end() || !it->second.dict_vr) return kUN;
        return it->second.dict_vr;
    }

    // The row after the subtree of row i.
    std::size_t skip(std::size_t i) const {
        const std::int64_t depth = at(i, 7);
        std::size_t j = i + 1;
        while (j < nrows && at(j, 7) > depth) ++j;
        return j;
    }

    std::int64_t path_id(const std::string& path) {
        auto it = path_ids.find(path);
        if (it != path_ids.end()) return it->second;
        const auto id = static_cast<std::int64_t>(r.paths.size());
        r.paths.push_back(path);
        path_ids.emplace(path, id);
        return id;
    }

    void report(const std::string& path, std::uint32_t tag, std::int32_t action) {
        if (action < 0) return;
        r.taken.insert(r.taken.end(), {path_id(path), static_cast<std::int64_t>(tag), action});
    }

    void report_all(const std::string& path, std::uint32_t tag,
                    const std::vector<std::int32_t>& notes, std::int32_t action) {
        for (auto note : notes) report(path, tag, note);
        report(path, tag, action);
    }

    const std::uint8_t* value(const Elem& e) const { return d + e.vstart; }
    std::size_t value_len(const Elem& e) const {
        return static_cast<std::size_t>(e.end - e.vstart);
    }

    // The element unchanged (RawEngine._keep / _copy).
    void copy(std::string& out, const Elem& e) const {
        if (e.code == kUN) decline("an element of VR UN is kept");
        out.append(reinterpret_cast<const char*>(d + e.start),
                   static_cast<std::size_t>(e.end - e.start));
    }

    void put(std::string& out, const Elem& e, const std::string& v) const {
        header(out, e.tag, e.vr, v.size(), implicit);
        out += v;
    }

    // UID remapping (Decider.map_uids, Keyed.uid, RawEngine._text_bytes) for plain values.
    std::string map_uids(const Elem& e) const {
        const std::uint8_t* p = value(e);
        std::size_t len = value_len(e);
        while (len && is_pad(p[len - 1])) --len;
        std::string out;
        std::size_t i = 0;
        for (;;) {
            std::size_t j = i;
            while (j < len && p[j] != '\\') {
                const std::uint8_t c = p[j];
                if (!((c >= '0' && c <= '9') || c == '.')) decline("UID value not plain");
                ++j;
            }
            if (j == i) decline("empty UID in a value");
            std::string uid(reinterpret_cast<const char*>(p + i), j - i);
            if (t.well_known.count(uid)) {
                out += uid;
            } else {
                out += remapped(t.secret, uid);
            }
            if (j >= len) break;
            out.push_back('\\');
            i = j + 1;
        }
        if (out.size() % 2) out.push_back('\0');
        return out;
    }

    // A value-dependent answer from the cache; a miss is noted and ends the file later.
    const CacheValue* cached(const VrEntry& ve, int empty, const Elem& e) {
        std::string key;
        key.reserve(8 + fp_key.size() + value_len(e));
        put32(key, static_cast<std::uint32_t>(ve.id));
        key.push_back(static_cast<char>(empty));
        key += fp_key;
        key.append(reinterpret_cast<const char*>(value(e)), value_len(e));
        auto it = t.cache.find(key);
        if (it != t.cache.end()) return &it->second;
        missed = true;
        r.misses.push_back(Miss{ve.id, empty, e.vstart, e.end});
        return nullptr;
    }

    // The coding scheme of an item, for a CodeMeaning in it (RawEngine._code_meaning).
    bool local_scheme(std::size_t first, std::size_t count) const {
        std::size_t i = first;
        for (std::size_t k = 0; k < count && i < nrows; ++k) {
            const Elem s = elem(i);
            if (s.tag == kCodingScheme) {
                if (s.vr != kSH) return true;  // not trusted: read as none
                const std::uint8_t* p = value(s);
                std::size_t a = 0, b = value_len(s);
                for (std::size_t x = 0; x < b; ++x)
                    if (p[x] < 0x20 || p[x] > 0x7E) decline("coding scheme not plain");
                while (b > a && is_pad(p[b - 1])) --b;
                while (a < b && p[a] == ' ') ++a;
                std::string v(reinterpret_cast<const char*>(p + a), b - a);
                if (v.find('\\') != std::string::npos || v.find(' ') != std::string::npos)
                    decline("coding scheme not plain");
                for (auto& c : v) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
                return v.empty() || v.rfind("99", 0) == 0 || v == "L" || v.rfind("L-", 0) == 0 ||
                       v.rfind("LOCAL", 0) == 0;
            }
            i = skip(i);
        }
        return true;
    }

    // RawEngine._private refuses these creators even when their blocks are removed.
    void private_creator_check(const Elem& e) const {
        const std::uint32_t el = e.tag & 0xFFFF;
        if (el < 0x10 || el > 0xFF) return;
        if (e.vr == kSQ || e.nitems >= 0) decline("sequence as private creator");
        static const std::uint16_t textish[] = {
            vr_code('L', 'O'), vr_code('S', 'H'), vr_code('C', 'S'), vr_code('A', 'E'),
            vr_code('U', 'C'), vr_code('S', 'T'), vr_code('L', 'T'), vr_code('U', 'T'),
            vr_code('P', 'N'), kUN};
        if (std::find(std::begin(textish), std::end(textish), e.vr) == std::end(textish))
            decline("private creator of a binary VR");
        const std::uint8_t* p = value(e);
        for (std::size_t i = 0; i < value_len(e); ++i) {
            if (p[i] == '\\') decline("multi-valued private creator");
            if (p[i] >= 0x80 || p[i] == 0x1b) decline("private creator not plain");
        }
        // _private re-encodes each creator (padding stripped, then padded to even) before
        // any verdict: an odd 65535-byte one no longer fits an explicit 2-byte length.
        std::size_t len = value_len(e);
        while (len && is_pad(p[len - 1])) --len;
        if (!implicit && len + (len & 1) > 0xFFFF) decline("value too long for its VR");
    }

    // One data set's elements (rows from i, count of them or all when count < 0): the
    // encoded elements in order, each as (tag, bytes). Returns the next row.
    std::size_t walk(std::size_t i, std::int64_t count, const std::string& path, bool top,
                     std::vector<std::pair<std::uint32_t, std::string>>& out) {
        const std::size_t first = i;
        std::vector<std::uint32_t> privates;
        std::int64_t left = count;
        while (left != 0 && i < nrows) {
            const Elem e = elem(i);
            const std::size_t next = skip(i);
            --left;
            if (e.nitems >= 0 && !e.code && e.vr != kSQ && e.vr != kUN)
                decline("undefined length outside a sequence");
            if (e.nitems < 0 && e.vr == kSQ) decline("sequence the scanner did not open");
            if (!top && e.tag == kCharset) decline("character set inside an item");
            if (e.tag == kPixelData && !top) decline("pixel data inside an item");
            const std::uint32_t group = e.tag >> 16;
            auto it = t.tags.find(e.tag);
            if (it == t.tags.end()) {
                if (group & 1) {
                    private_creator_check(e);
                    privates.push_back(e.tag);
                    i = next;
                    continue;
                }
                if ((e.tag & 0xFFFF) == 0 && group != 2) {
                    i = next;  // a group length: stale after any change, dropped unreported
                    continue;
                }
                // Python adds the tag's entry (the table grows with the tags files hold).
                missed = true;
                r.misses.push_back(Miss{-1, 0, static_cast<std::int64_t>(e.tag), 0});
                i = next;
                continue;
            }
            const TagEntry& te = it->second;
            if (te.plain_vr && te.plain_vr == e.vr && e.tag != kPixelData) {
                std::string chunk;
                copy(chunk, e);
                note_final(top, e, chunk);
                out.emplace_back(e.tag, std::move(chunk));
                i = next;
                continue;
            }
            if (e.vr == kUN) decline("an even element of VR UN");
            const VrEntry* ve = nullptr;
            for (const auto& cand : te.vrs)
                if (cand.vr == e.vr) ve = &cand;
            if (ve == nullptr) decline("VR not in the table for its tag");
            int empty = 0;
            if (ve->use_empty)
                empty = e.vr == kSQ ? (e.nitems <= 0) : empty_value(value(e), value_len(e));
            const Variant& v = ve->v[empty];
            if (te.code_meaning && v.kind == kKeep && local_scheme(first, static_cast<std::size_t>(count < 0 ? 0 : count)))
                decline("local code meaning");
            if (e.tag == kPixelData && v.kind != kKeep && v.kind != kRemove)
                decline("pixel data not kept or removed");
            std::string chunk;
            bool present = true;
            std::int32_t rep = v.report;
            const std::vector<std::int32_t>* notes = &v.notes;
            switch (v.kind) {
                case kRemove:
                    present = false;
                    break;
                case kKeep:
                    if (e.vr == kSQ) {
                        sequence(chunk, e, i, path, true);
                    } else if (e.tag == kPixelData) {
                        if (e.code == kUN) decline("an element of VR UN is kept");
                        pixel_row = static_cast<std::int64_t>(i);
                    } else {
                        copy(chunk, e);
                    }
                    break;
                case kEmpty:
                    if (e.vr == kSQ)
                        sequence(chunk, e, i, path, false);
                    else
                        header(chunk, e.tag, e.vr, 0, implicit);
                    break;
                case kPut:
                    put(chunk, e, v.value);
                    break;
                case kUid:
                    put(chunk, e, map_uids(e));
                    break;
                case kCache: {
                    const CacheValue* c = cached(*ve, empty, e);
                    if (c == nullptr) {
                        present = false;
                        rep = -1;
                        break;
                    }
                    // The cache holds the decision layer's act(); for a local code's meaning
                    // Python's code_meaning() goes on to clean a kept value: not cached.
                    if (te.code_meaning && c->kind == kKeep &&
                        local_scheme(first, static_cast<std::size_t>(count < 0 ? 0 : count)))
                        decline("local code meaning");
                    rep = c->report;
                    notes = &c->notes;
                    if (c->kind == kRemove) present = false;
                    else if (c->kind == kKeep) copy(chunk, e);
                    else if (c->kind == kEmpty) header(chunk, e.tag, e.vr, 0, implicit);
                    else if (c->kind == kPut) put(chunk, e, c->value);
                    else decline("cached answer not covered");
                    break;
                }
                default:
                    decline(v.reason.empty() ? std::string("not covered") : v.reason);
            }
            report_all(path, e.tag, *notes, rep);
            if (present) {
                if (e.tag == kPixelData) {
                    out.emplace_back(e.tag, std::string());
                } else {
                    note_final(top, e, chunk);
                    out.emplace_back(e.tag, std::move(chunk));
                }
            }
            i = next;
        }
        if (!privates.empty()) {
            if (t.private_report < 0) decline("private elements under a private policy");
            // Plan order (decide.plan_private): data elements first, then the low ones.
            for (auto tag : privates)
                if ((tag & 0xFFFF) >= 0x1000) report(path, tag, t.private_report);
            for (auto tag : privates)
                if ((tag & 0xFFFF) < 0x1000) report(path, tag, t.private_report);
        }
        return i;
    }

    // A sequence re-encoded (RawEngine._recurse / _sequence); items walked when `walk_items`.
    void sequence(std::string& out, const Elem& e, std::size_t row, const std::string& path,
                  bool walk_items) {
        std::string value;
        if (walk_items) {
            const std::string base = path + tag_text(e.tag);
            std::size_t i = row + 1;
            for (std::int64_t k = 0; k < e.nitems; ++k) {
                if (i >= nrows || at(i, 0) != -1) decline("sequence rows out of step");
                const bool undefined = at(i, 1) == 1;
                const std::int64_t nelems = at(i, 4);
                std::vector<std::pair<std::uint32_t, std::string>> parts;
                const std::string sub = base + "[" + std::to_string(k) + "]/";
                i = walk(i + 1, nelems, sub, false, parts);
                std::size_t size = 0;
                for (auto& p : parts) size += p.second.size();
                if (undefined) {
                    value.append("\xfe\xff\x00\xe0\xff\xff\xff\xff", 8);
                } else {
                    value.append("\xfe\xff\x00\xe0", 4);
                    put32(value, static_cast<std::uint32_t>(size));
                }
                for (auto& p : parts) value += p.second;
                if (undefined) value.append("\xfe\xff\x0d\xe0\x00\x00\x00\x00", 8);
            }
        }
        put_tag(out, e.tag);
        if (!implicit) out.append("SQ\x00\x00", 4);
        if (static_cast<std::uint64_t>(e.length) == kUndefined) {
            put32(out, kUndefined);
            out += value;
            out.append("\xfe\xff\xdd\xe0\x00\x00\x00\x00", 8);
        } else {
            put32(out, static_cast<std::uint32_t>(value.size()));
            out += value;
        }
    }

    void note_final(bool top, const Elem& e, const std::string& chunk) {
        if (!top) return;
        if (std::find(t.catalog_tags.begin(), t.catalog_tags.end(), e.tag) ==
            t.catalog_tags.end())
            return;
        const std::size_t head = (!implicit && long_vr(e.vr)) ? 12 : 8;
        if (chunk.size() < head) decline("catalog element without a header");
        r.catalog.push_back({e.tag, {e.vr, chunk.substr(head)}});
    }

    const std::string* final_value(std::uint32_t tag) const {
        for (const auto& c : r.catalog)
            if (c.first == tag) return &c.second.second;
        return nullptr;
    }

    void run() {
        if (n < 144 || std::memcmp(d + 128, "DICM", 4) != 0) decline("no preamble");
        if (std::memcmp(d + 132, "\x02\x00\x00\x00", 4) != 0 || rd16(d + 136) != kUL)
            decline("no meta group length");
        // RawEngine._meta_end: group 2 runs from 132 to the first element of another group.
        std::size_t pos = 132;
        while (pos + 8 <= n && rd16(d + pos) == 2) {
            if (long_vr(rd16(d + pos + 4))) {
                if (pos + 12 > n) break;
                const std::uint32_t len = rd32(d + pos + 8);
                if (len == kUndefined) decline("undefined length in the file meta");
                pos += 12 + static_cast<std::size_t>(len);
            } else {
                pos += 8 + rd16(d + pos + 6);
            }
        }
        if (pos > n) decline("file meta runs past the end");
        const std::size_t meta_end = pos;
        ScanResult scan;
        scan_elements(d, n, 132, meta_end, false, t.sq_tags.data(), t.sq_tags.size(), scan);
        if (!scan.error.empty()) decline(scan.error);
        const std::size_t nmeta = scan.rows.size() / kCols;
        std::string syntax;
        for (std::size_t i = 0; i < nmeta; ++i) {
            const std::int64_t* row = scan.rows.data() + i * kCols;
            if (row[0] == -1 || row[7] != 0) decline("sequence in the file meta");
            r.meta.insert(r.meta.end(), {row[0], row[1], row[2], row[3], row[4], row[5]});
            // The meta templates are keyed without the group length (the writer computes
            // it anew): RawEngine declines one of another size or VR.
            if (row[0] == 0x00020000 && (row[1] != kUL || row[4] != 4))
                decline("file meta group length not one UL value");
            if (row[0] == 0x00020010) {
                std::size_t a = static_cast<std::size_t>(row[3]),
                            b = static_cast<std::size_t>(row[5]);
                while (b > a && is_pad(d[b - 1])) --b;
                syntax.assign(reinterpret_cast<const char*>(d + a), b - a);
            }
        }
        auto ts = t.syntaxes.find(syntax);
        if (ts == t.syntaxes.end()) decline("not a little-endian transfer syntax it covers");
        implicit = r.implicit = ts->second == 1;
        r.meta_key = meta_key(d, n, r.meta);
        ScanResult body;
        scan_elements(d, n, meta_end, n, implicit, t.sq_tags.data(), t.sq_tags.size(), body);
        if (!body.error.empty()) decline(body.error);
        rows = std::move(body.rows);
        nrows = rows.size() / kCols;
        check_rows();
        fingerprint();
        std::vector<std::pair<std::uint32_t, std::string>> out;
        walk(0, -1, "", true, out);
        if (missed) throw Stop{kMiss, "value not in the cache"};
        // Pixel data (RawEngine._header_work and _assemble).
        const Elem* pix = nullptr;
        Elem pe{};
        if (pixel_row >= 0) {
            pe = elem(static_cast<std::size_t>(pixel_row));
            pix = &pe;
            if (static_cast<std::uint64_t>(pe.length) != kUndefined &&
                (pe.end - pe.vstart) % 2)
                decline("odd-length pixel data");
        }
        const std::string* sop = final_value(kSopInstance);
        std::string sop_text;
        if (sop != nullptr) {
            std::size_t b = sop->size();
            while (b && is_pad(static_cast<std::uint8_t>((*sop)[b - 1]))) --b;
            sop_text = sop->substr(0, b);
        }
        if (sop_text.empty()) decline("no SOP Instance UID in the output");
        for (unsigned char c : sop_text)
            if (c >= 0x80) decline("SOP Instance UID not ASCII");
        // Safe Harbor's age cap on the output value (RawEngine._cap_age): only values it
        // leaves as they are pass here.
        if (const std::string* age = final_value(kPatientAge)) {
            std::size_t b = age->size();
            while (b && is_pad(static_cast<std::uint8_t>((*age)[b - 1]))) --b;
            if (b) {
                const std::string a = age->substr(0, b);
                const bool shape = a.size() == 4 && std::isdigit(static_cast<unsigned char>(a[0])) &&
                                   std::isdigit(static_cast<unsigned char>(a[1])) &&
                                   std::isdigit(static_cast<unsigned char>(a[2])) &&
                                   std::strchr("DWMY", a[3]) != nullptr && a[3] != 0;
                if (!shape) decline("age value to cap");
                if (a[3] == 'Y' && std::stoi(a.substr(0, 3)) > 89) decline("age value to cap");
            }
        }
        auto mt = t.metas.find(r.meta_key);
        if (mt == t.metas.end()) throw Stop{kMiss, "file meta not in the cache"};
        for (const auto& tk : mt->second.taken) report("meta", tk.first, tk.second);
        if (!in.build) {
            r.status = kOk;
            return;
        }
        if (in.marks < 0 || static_cast<std::size_t>(in.marks) >= t.marks.size())
            decline("no mark set");
        const auto& marks = t.marks[static_cast<std::size_t>(in.marks)];
        // File meta (writer.splice_file_meta).
        std::string meta_body = mt->second.pre;
        std::string uid = sop_text;
        if (uid.size() % 2) uid.push_back('\0');
        // A 2-byte length: a longer UID list (an Implicit VR input's, remapped) would wrap
        // it and corrupt the meta; writer.splice_file_meta raises there, and so the raw-byte
        // engine hands the file on.
        if (uid.size() > 0xFFFF) decline("value too long for its VR");
        meta_body.append("\x02\x00\x03\x00UI", 6);
        put16(meta_body, static_cast<std::uint32_t>(uid.size()));
        meta_body += uid;
        meta_body += mt->second.post;
        std::string& head = r.head;
        head.assign(128, '\0');
        head.append("DICM\x02\x00\x00\x00UL\x04\x00", 12);
        put32(head, static_cast<std::uint32_t>(meta_body.size()));
        head += meta_body;
        std::string* cur = &head;
        std::size_t mi = 0;
        for (auto& piece : out) {
            const std::uint32_t tag = piece.first;
            while (mi < marks.size() && marks[mi].first < tag) *cur += marks[mi++].second;
            if (mi < marks.size() && marks[mi].first == tag) {
                *cur += marks[mi++].second;
                continue;
            }
            if (tag == kPixelData && pix != nullptr) {
                const Elem& e = *pix;
                if (static_cast<std::uint64_t>(e.length) == kUndefined) {
                    if (in.pixels != nullptr) decline("compressed pixels changed");
                    header(*cur, tag, e.vr, kUndefined, implicit);
                    r.pix_start = e.vstart;
                    r.pix_end = e.end - 8;
                    cur = &r.tail;
                    cur->append("\xfe\xff\xdd\xe0\x00\x00\x00\x00", 8);
                } else if (in.pixels != nullptr) {
                    if (in.pixels_size % 2) decline("odd-length new pixel data");
                    header(*cur, tag, e.vr, in.pixels_size, implicit);
                    r.pix_start = 0;
                    r.pix_end = static_cast<std::int64_t>(in.pixels_size);
                    r.pix_replaced = true;
                    cur = &r.tail;
                } else {
                    header(*cur, tag, e.vr, static_cast<std::uint64_t>(e.end - e.vstart),
                           implicit);
                    r.pix_start = e.vstart;
                    r.pix_end = e.end;
                    cur = &r.tail;
                }
                continue;
            }
            *cur += piece.second;
        }
        for (; mi < marks.size(); ++mi) *cur += marks[mi].second;
        if (!in.hash) {
            // The caller joins and hashes the output in one pass (gather) once Python has
            // settled the pixels: no hash here, r.sha stays zero.
            r.status = kOk;
            return;
        }
        digest::Sha256 h;
        h.update(reinterpret_cast<const std::uint8_t*>(r.head.data()), r.head.size());
        if (r.pix_start >= 0) {
            const std::uint8_t* src = r.pix_replaced ? in.pixels : d;
            h.update(src + r.pix_start, static_cast<std::size_t>(r.pix_end - r.pix_start));
        }
        h.update(reinterpret_cast<const std::uint8_t*>(r.tail.data()), r.tail.size());
        h.final(r.sha.data());
        r.status = kOk;
    }

    // RawEngine's _tree refuses, anywhere in the file, an element without a VR in the file
    // (Implicit VR, or inside a UN sequence) that has an undefined length while its VR is
    // neither SQ nor UN; the walk only sees the elements it visits, not those of a sequence
    // removed whole (a private UN sequence of an explicit file above all).
    void check_rows() {
        for (std::size_t i = 0; i < nrows; ++i) {
            if (at(i, 0) == -1 || at(i, 1) != 0 || at(i, 6) < 0) continue;
            const auto tag = static_cast<std::uint32_t>(at(i, 0));
            if (std::binary_search(t.sq_tags.begin(), t.sq_tags.end(), tag)) continue;
            const std::uint32_t el = tag & 0xFFFF;
            if ((tag >> 16) & 1) {
                // Private: creators read as LO; data elements have no dictionary VR (UN).
                if (el >= 0x10 && el <= 0xFF) decline("undefined length outside a sequence");
                continue;
            }
            if (el == 0) decline("undefined length outside a sequence");  // a group length: UL
            auto it = t.tags.find(tag);
            if (it == t.tags.end()) {
                // Its dictionary VR decides: Python adds the tag's entry, as for the walk.
                missed = true;
                r.misses.push_back(Miss{-1, 0, static_cast<std::int64_t>(tag), 0});
                continue;
            }
            const std::uint16_t vr = it->second.dict_vr;
            if (vr != 0 && vr != kSQ && vr != kUN) decline("undefined length outside a sequence");
        }
    }

    // An element the raw-byte engine's identity may read as a name although its VR here is
    // not PN: written as UN (RawEngine._identity takes a UN whose dictionary VR is PN), or
    // Implicit VR with a tag the table has not met yet (inside a sequence that is removed
    // unwalked). Unknown tags count: a name left out of the key would let one patient's
    // cached answers serve a file whose identity differs.
    bool maybe_pn(const Elem& e) const {
        if (e.code != kUN && e.code != 0) return false;
        if ((e.tag >> 16) & 1) return false;  // private: no dictionary VR
        auto it = t.tags.find(e.tag);
        return it == t.tags.end() || it->second.dict_vr == kPN;
    }

    // The patient identity's fingerprint: what Python's answers for this file depend on
    // beyond the value itself (RawEngine._identity's key, the patient key, the charset).
    void fingerprint() {
        std::string buf;
        auto add = [&buf](const std::uint8_t* p, std::size_t len) {
            put32(buf, static_cast<std::uint32_t>(len));
            buf.append(reinterpret_cast<const char*>(p), len);
        };
        bool charset_seen = false;
        for (std::size_t i = 0; i < nrows; ++i) {
            if (at(i, 0) == -1) continue;
            const Elem e = elem(i);
            if (e.depth != 0) continue;
            r.top.insert(r.top.end(), {static_cast<std::int64_t>(e.tag), e.code, e.start,
                                       e.vstart, e.length, e.end});
            if ((e.vr == kSQ || e.nitems >= 0) &&
                std::find(t.term_tags.begin(), t.term_tags.end(), e.tag) != t.term_tags.end())
                decline("identifying element is a sequence");
            if (e.tag == kCharset) {
                charset_seen = true;
                std::size_t b = value_len(e);
                const std::uint8_t* p = value(e);
                while (b && is_pad(p[b - 1])) --b;
                if (!t.charsets.count(std::string(reinterpret_cast<const char*>(p), b)))
                    decline("character set not covered");
            }
        }
        if (!charset_seen && !t.charsets.count(std::string())) decline("no character set");
        buf.push_back(implicit ? 'I' : 'E');
        for (auto tag : t.term_tags) {
            bool found = false;
            for (std::size_t k = 0; k < r.top.size(); k += 6) {
                if (static_cast<std::uint32_t>(r.top[k]) != tag) continue;
                found = true;
                const std::size_t vs = static_cast<std::size_t>(r.top[k + 3]);
                const std::size_t ve = static_cast<std::size_t>(r.top[k + 5]);
                buf.push_back('T');
                add(d + vs, ve - vs);
            }
            if (!found) buf.push_back('-');
        }
        for (auto tag : {kCharset}) {
            for (std::size_t k = 0; k < r.top.size(); k += 6)
                if (static_cast<std::uint32_t>(r.top[k]) == tag) {
                    buf.push_back('C');
                    add(d + r.top[k + 3], static_cast<std::size_t>(r.top[k + 5] - r.top[k + 3]));
                }
        }
        for (std::size_t i = 0; i < nrows; ++i) {
            if (at(i, 0) == -1) continue;
            const Elem e = elem(i);
            if ((e.vr == kPN && e.nitems < 0) || maybe_pn(e)) {
                buf.push_back('P');
                add(value(e), value_len(e));
            }
        }
        digest::sha256(reinterpret_cast<const std::uint8_t*>(buf.data()), buf.size(),
                       r.fingerprint.data());
        fp_key.assign(reinterpret_cast<const char*>(r.fingerprint.data()), 32);
    }
};

}  // namespace

std::string meta_key(const std::uint8_t* data, std::size_t size,
                     const std::vector<std::int64_t>& meta_rows) {
    std::string key;
    bool sop = false;
    std::uint32_t sop_vr = 0;
    for (std::size_t k = 0; k + 6 <= meta_rows.size(); k += 6) {
        const auto tag = static_cast<std::uint32_t>(meta_rows[k]);
        const auto vr = static_cast<std::uint32_t>(meta_rows[k + 1]);
        const auto vs = static_cast<std::size_t>(meta_rows[k + 3]);
        const auto ve = static_cast<std::size_t>(meta_rows[k + 5]);
        if (ve > size || vs > ve) return std::string();
        // The VR is part of the key: a meta element whose VR its tag does not allow is
        // removed by the walk, so metas alike but for a VR have different templates.
        if (tag == 0x00020003) {
            // The walk decodes the SOP Instance UID and maps each of its values: whether
            // it is one plain ASCII value is part of the key (RawEngine.meta_template_key;
            // a template of another is not taught to the core).
            sop_vr = vr;
            if (meta_rows[k + 4]) sop = true;
            for (std::size_t x = vs; x < ve; ++x)
                if (data[x] >= 0x80 || data[x] == 0x1b || data[x] == '\\') sop_vr |= 0x10000u;
            continue;
        }
        if (tag == 0x00020000) continue;
        put32(key, tag);
        put32(key, vr);
        put32(key, static_cast<std::uint32_t>(ve - vs));
        key.append(reinterpret_cast<const char*>(data + vs), ve - vs);
    }
    put32(key, sop_vr);
    key.push_back(sop ? '\1' : '\0');
    return key;
}

void process(const Table& table, const Input& in, Result& out) {
    out = Result();
    Walker w(table, in, out);
    try {
        w.run();
    } catch (const Stop& s) {
        out.status = s.status;
        out.reason = s.reason;
    } catch (const std::exception& e) {
        out.status = kDeclined;
        out.reason = std::string("native error: ") + e.what();
    }
    if (out.status != kOk) {
        out.head.clear();
        out.tail.clear();
        out.pix_start = out.pix_end = -1;
    }
}

void process_batch(const Table& table, const std::vector<Input>& inputs,
                   std::vector<Result>& out, int threads) {
    out.assign(inputs.size(), Result());
    std::shared_lock<std::shared_mutex> lock(table.mu);
    const std::size_t total = inputs.size();
    std::size_t nthreads = threads > 1 ? static_cast<std::size_t>(threads) : 1;
    nthreads = std::min(nthreads, total);
    if (nthreads <= 1) {
        for (std::size_t i = 0; i < total; ++i) process(table, inputs[i], out[i]);
        return;
    }
    std::vector<std::thread> pool;
    pool.reserve(nthreads);
    for (std::size_t k = 0; k < nthreads; ++k) {
        pool.emplace_back([&, k] {
            for (std::size_t i = k; i < total; i += nthreads) process(table, inputs[i], out[i]);
        });
    }
    for (auto& th : pool) th.join();
}

}  // namespace medveil::fastpath

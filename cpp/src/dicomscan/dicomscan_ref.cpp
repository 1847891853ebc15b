// Portable DICOM element scanner; see dicomscan.hpp for the row format.
#include "medveil/dicomscan.hpp"

#include <algorithm>

#include "medveil/dicom_le.hpp"

namespace medveil {
namespace {

using dicom_le::rd16;
using dicom_le::rd32;
using dicom_le::rd_tag;
using dicom_le::vr_code;

constexpr std::uint32_t kUndefined = 0xFFFFFFFFu;
constexpr std::uint32_t kItem = 0xFFFEE000u;
constexpr std::uint32_t kItemEnd = 0xFFFEE00Du;
constexpr std::uint32_t kSeqEnd = 0xFFFEE0DDu;
constexpr std::uint32_t kPixelData = 0x7FE00010u;
constexpr int kMaxDepth = 64;  // deeper nesting is not a real file; stops the recursion
// A row is 64 bytes and an element can be 8: a file of empty elements would make rows of
// eight times its size. Past this many (64 MiB of rows) the file is refused instead.
constexpr std::size_t kMaxRows = std::size_t{1} << 20;

// VRs with a 2-byte length in Explicit VR (PS3.5 7.1.2).
bool short_vr(std::uint16_t v) {
    switch (v) {
        case vr_code('A', 'E'): case vr_code('A', 'S'): case vr_code('A', 'T'):
        case vr_code('C', 'S'): case vr_code('D', 'A'): case vr_code('D', 'S'):
        case vr_code('D', 'T'): case vr_code('F', 'L'): case vr_code('F', 'D'):
        case vr_code('I', 'S'): case vr_code('L', 'O'): case vr_code('L', 'T'):
        case vr_code('P', 'N'): case vr_code('S', 'H'): case vr_code('S', 'L'):
        case vr_code('S', 'S'): case vr_code('S', 'T'): case vr_code('T', 'M'):
        case vr_code('U', 'I'): case vr_code('U', 'L'): case vr_code('U', 'S'):
            return true;
        default:
            return false;
    }
}

struct Scanner {
    const std::uint8_t* data;
    std::size_t size;
    const std::uint32_t* sq;
    std::size_t nsq;
    std::vector<std::int64_t>& rows;
    std::string error;

    bool fail(const char* why) {
        if (error.empty()) error = why;
        return false;
    }

    bool is_sq_tag(std::uint32_t tag) const { return std::binary_search(sq, sq + nsq, tag); }

    std::size_t push(std::int64_t a, std::int64_t b, std::int64_t c, std::int64_t d,
                     std::int64_t e, std::int64_t f, std::int64_t g, int depth) {
        const std::size_t at = rows.size() / kScanColumns;
        rows.insert(rows.end(), {a, b, c, d, e, f, g, static_cast<std::int64_t>(depth)});
        return at;
    }

    // Elements from pos up to end, or up to an item delimiter (then `pos` is after it).
    bool elements(std::size_t& pos, std::size_t end, bool top, bool implicit, int depth,
                  std::int64_t& count) {
        if (depth > kMaxDepth) return fail("sequences nested too deep");
        std::int64_t last = -1;
        count = 0;
        while (pos < end) {
            if (rows.size() >= kMaxRows * kScanColumns) return fail("too many elements");
            if (end - pos < 8) return fail("truncated element header");
            const std::uint8_t* p = data + pos;
            const std::uint32_t tag = rd_tag(p);
            std::uint16_t vr = 0;
            std::uint64_t length;
            std::size_t vstart;
            if (implicit) {
                length = rd32(p + 4);
                vstart = pos + 8;
            } else {
                vr = rd16(p + 4);
                if (short_vr(vr)) {
                    length = rd16(p + 6);
                    vstart = pos + 8;
                } else if (dicom_le::long_vr_or_un(vr)) {
                    if (end - pos < 12) return fail("truncated element header");
                    length = rd32(p + 8);
                    vstart = pos + 12;
                } else if (tag == kItemEnd) {
                    length = 0;
                    vstart = pos + 8;
                } else {
                    return fail("unknown VR");
                }
            }
            if (tag == kItemEnd) {
                pos += 8;
                return true;
            }
            if (static_cast<std::int64_t>(tag) <= last) return fail("elements out of order");
            last = tag;
            const bool un = vr == vr_code('U', 'N');
            const bool seq = implicit ? (is_sq_tag(tag) || length == kUndefined)
                                      : (vr == vr_code('S', 'Q') || (un && length == kUndefined));
            if (seq) {
                const std::size_t row = push(tag, vr, static_cast<std::int64_t>(pos),
                                             static_cast<std::int64_t>(vstart),
                                             static_cast<std::int64_t>(length), 0, 0, depth);
                std::size_t stop;
                std::int64_t nitems;
                if (!items(vstart, length, end, implicit || un, depth + 1, stop, nitems))
                    return false;
                rows[row * kScanColumns + 5] = static_cast<std::int64_t>(stop);
                rows[row * kScanColumns + 6] = nitems;
                pos = stop;
                ++count;
                continue;
            }
            std::size_t stop;
            if (length == kUndefined) {
                if (tag != kPixelData || implicit)
                    return fail("undefined length outside a sequence");
                if (!fragments_end(vstart, end, stop)) return false;
            } else {
                if (length > end - vstart) return fail("value runs past the end");
                stop = vstart + static_cast<std::size_t>(length);
            }
            push(tag, vr, static_cast<std::int64_t>(pos), static_cast<std::int64_t>(vstart),
                 static_cast<std::int64_t>(length), static_cast<std::int64_t>(stop), -1, depth);
            pos = stop;
            ++count;
        }
        if (!top) return fail("item without delimiter");
        return true;
    }

    // Encapsulated Pixel Data from pos: fragment items up to the sequence delimiter.
    bool fragments_end(std::size_t pos, std::size_t end, std::size_t& stop) {
        while (pos <= end && end - pos >= 8) {
            const std::uint32_t tag = rd_tag(data + pos);
            const std::uint32_t length = rd32(data + pos + 4);
            if (tag == kSeqEnd) {
                stop = pos + 8;
                return true;
            }
            if (tag != kItem || length == kUndefined || length > end - pos - 8)
                return fail("malformed encapsulated pixel data");
            pos += 8 + static_cast<std::size_t>(length);
        }
        return fail("encapsulated pixel data without delimiter");
    }

    // The items of a sequence value starting at pos.
    bool items(std::size_t pos, std::uint64_t length, std::size_t end, bool implicit,
               int depth, std::size_t& stop, std::int64_t& nitems) {
        const bool undefined = length == kUndefined;
        if (pos > end) return fail("sequence runs past the end");
        if (!undefined && length > end - pos) return fail("sequence runs past the end");
        stop = undefined ? end : pos + static_cast<std::size_t>(length);
        nitems = 0;
        while (pos < stop) {
            if (rows.size() >= kMaxRows * kScanColumns) return fail("too many elements");
            if (stop - pos < 8) return fail("truncated item header");
            const std::uint32_t tag = rd_tag(data + pos);
            const std::uint32_t ilen = rd32(data + pos + 4);
            if (tag == kSeqEnd) {
                if (!undefined) return fail("sequence delimiter in a defined-length sequence");
                stop = pos + 8;
                return true;
            }
            if (tag != kItem) return fail("not an item in a sequence");
            const std::size_t start = pos;
            const std::size_t row =
                push(-1, 0, static_cast<std::int64_t>(start), 0, 0, 0, 0, depth);
            std::int64_t nelems = 0;
            if (ilen == kUndefined) {
                pos += 8;
                if (!elements(pos, stop, false, implicit, depth, nelems)) return false;
                rows[row * kScanColumns + 1] = 1;
                rows[row * kScanColumns + 3] = static_cast<std::int64_t>(pos);
            } else {
                if (ilen > stop - pos - 8) return fail("item runs past its sequence");
                const std::size_t iend = pos + 8 + ilen;
                pos += 8;
                // An item delimiter inside a defined-length item ends its elements early;
                // the next item is then looked for right after it, as the engine always did.
                if (!elements(pos, iend, true, implicit, depth, nelems)) return false;
                rows[row * kScanColumns + 3] = static_cast<std::int64_t>(iend);
            }
            rows[row * kScanColumns + 4] = nelems;
            ++nitems;
        }
        if (undefined) return fail("sequence without delimiter");
        return true;
    }
};

}  // namespace

void scan_elements(const std::uint8_t* data, std::size_t size, std::size_t pos,
                   std::size_t end, bool implicit, const std::uint32_t* sq_tags,
                   std::size_t n_sq_tags, ScanResult& out) {
    out.rows.clear();
    out.error.clear();
    out.end = pos;
    if (end > size || pos > end) {
        out.error = "data set runs past the end";
        return;
    }
    Scanner s{data, size, sq_tags, n_sq_tags, out.rows, {}};
    std::int64_t count = 0;
    std::size_t at = pos;
    if (!s.elements(at, end, true, implicit, 0, count)) out.error = s.error;
    out.end = at;
}

}  // namespace medveil

// Region planning shared by every backend: clip, group by frame range, merge per row into
// byte spans, then fill the spans of every plane with software prefetch running ahead.
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <utility>
#include <vector>

#include "medveil/mask.hpp"

namespace medveil {
namespace {

using FillFn = void (*)(std::uint8_t*, std::size_t, std::uint64_t, std::size_t);

struct Fills {
    FillFn cached;    // ordinary stores: the data stays in cache for whoever reads it next
    FillFn streamed;  // non-temporal where the backend has them, else the same as cached
};

Fills fills_for(Backend b) {
#ifdef MEDVEIL_HAVE_AVX2
    if (has_avx2(b)) return {detail::fill_avx2, detail::fill_stream_avx2};
#endif
    (void)b;
    return {detail::fill_ref, detail::fill_ref};
}

// Short spans scattered over a large stack are bound by memory latency: while filling
// one, ask for the lines of the span this many places ahead so that their misses overlap
// (label rows are 2-10 lines, so about 50 lines are in flight).
constexpr std::size_t kAheadSpans = 8;
// Longer spans are streamed well by the hardware prefetcher.
constexpr std::size_t kPrefetchMaxBytes = 4096;
// Streaming stores pay off only when the whole call writes more than the caches hold
// (then the lines would be evicted unread anyway) and for runs long enough that full
// lines dominate; below that, ordinary stores keep the data warm for the next reader.
constexpr std::size_t kStreamTotalBytes = std::size_t{8} << 20;
constexpr std::size_t kStreamMinRun = std::size_t{16} << 10;

std::int64_t clamp(std::int64_t v, std::int64_t lo, std::int64_t hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

// A byte range relative to the start of a plane.
struct Span {
    std::size_t offset, nbytes;
};

// Integer addresses: aligning down may leave the array, which a pointer must not.
inline void prefetch_span(const std::uint8_t* p, std::size_t nbytes) {
    if (nbytes > kPrefetchMaxBytes) return;
    const auto base = reinterpret_cast<std::uintptr_t>(p);
    for (std::uintptr_t a = base & ~std::uintptr_t{63}; a < base + nbytes; a += 64)
        __builtin_prefetch(reinterpret_cast<const void*>(a), 1, 3);
}

// Collects byte runs and writes them only when the next run is not adjacent, so that
// full-width bands and whole planes become one long fill.
class Coalescer {
public:
    Coalescer(Fills fills, bool stream, std::uint64_t pattern8, std::size_t itemsize)
        : fills_(fills), stream_(stream), pattern8_(pattern8), itemsize_(itemsize) {}
    void add(std::uint8_t* p, std::size_t n) {
        if (start_ != nullptr && start_ + len_ == p) {
            len_ += n;
            return;
        }
        flush();
        start_ = p;
        len_ = n;
    }
    void flush() {
        if (start_ == nullptr) return;
        const FillFn fill = stream_ && len_ >= kStreamMinRun ? fills_.streamed : fills_.cached;
        fill(start_, len_, pattern8_, itemsize_);
        start_ = nullptr;
        len_ = 0;
    }

private:
    Fills fills_;
    bool stream_;
    std::uint64_t pattern8_;
    std::size_t itemsize_;
    std::uint8_t* start_ = nullptr;
    std::size_t len_ = 0;
};

// Appends the merged spans of `active` (sorted by c0) for one plane, in address order.
void plan_spans(const std::vector<const Region*>& active, std::size_t row_bytes,
                std::size_t col_bytes, std::vector<std::int64_t>& row_edges,
                std::vector<std::pair<std::int64_t, std::int64_t>>& runs,
                std::vector<Span>& spans) {
    row_edges.clear();
    for (const Region* r : active) {
        row_edges.push_back(r->r0);
        row_edges.push_back(r->r1);
    }
    std::sort(row_edges.begin(), row_edges.end());
    row_edges.erase(std::unique(row_edges.begin(), row_edges.end()), row_edges.end());
    for (std::size_t b = 0; b + 1 < row_edges.size(); ++b) {
        const std::int64_t ra = row_edges[b], rb = row_edges[b + 1];
        // Rows in [ra, rb) are covered by the same regions: merge their column runs once.
        runs.clear();
        std::int64_t run0 = -1, run1 = -1;
        for (const Region* r : active) {
            if (ra < r->r0 || ra >= r->r1) continue;
            if (r->c0 > run1) {
                if (run1 > run0) runs.emplace_back(run0, run1);
                run0 = r->c0;
                run1 = r->c1;
            } else {
                run1 = std::max(run1, r->c1);
            }
        }
        if (run1 > run0) runs.emplace_back(run0, run1);
        for (std::int64_t row = ra; row < rb; ++row) {
            const std::size_t line = static_cast<std::size_t>(row) * row_bytes;
            for (const auto& run : runs) {
                const std::size_t off = line + static_cast<std::size_t>(run.first) * col_bytes;
                const std::size_t n = static_cast<std::size_t>(run.second - run.first) * col_bytes;
                if (!spans.empty() && spans.back().offset + spans.back().nbytes == off)
                    spans.back().nbytes += n;  // a run ending a row meets one starting the next
                else
                    spans.push_back(Span{off, n});
            }
        }
    }
}

// Fills `spans` in every plane of [plane0, plane1), prefetching the span kAheadSpans places
// on (in this plane, or at the start of the next).
void fill_planes(Coalescer& out, std::uint8_t* data, std::size_t plane_bytes,
                 const std::vector<Span>& spans, std::size_t plane0, std::size_t plane1) {
    const Span* s = spans.data();
    const std::size_t n = spans.size();
    for (std::size_t p = plane0; p < plane1; ++p) {
        std::uint8_t* plane = data + p * plane_bytes;
        std::size_t k = 0;
        if (n > kAheadSpans) {
            for (; k + kAheadSpans < n; ++k) {
                prefetch_span(plane + s[k + kAheadSpans].offset, s[k + kAheadSpans].nbytes);
                out.add(plane + s[k].offset, s[k].nbytes);
            }
            if (p + 1 < plane1) {
                for (std::size_t j = 0; k < n; ++k, ++j) {
                    prefetch_span(plane + plane_bytes + s[j].offset, s[j].nbytes);
                    out.add(plane + s[k].offset, s[k].nbytes);
                }
            }
        }
        for (; k < n; ++k) out.add(plane + s[k].offset, s[k].nbytes);
    }
}

}  // namespace

void mask_regions(Backend backend, const PixelLayout& px, const Region* regions,
                  std::size_t n_regions, const std::uint8_t* pattern) {
    if (px.itemsize != 1 && px.itemsize != 2 && px.itemsize != 4 && px.itemsize != 8)
        throw std::invalid_argument("mask_regions: itemsize must be 1, 2, 4 or 8");
    if (px.col_scale == 0 || px.row_elems % px.col_scale != 0)
        throw std::invalid_argument("mask_regions: row length is not a multiple of samples");
    const auto frames = static_cast<std::int64_t>(px.frames);
    const auto rows = static_cast<std::int64_t>(px.rows);
    const auto cols = static_cast<std::int64_t>(px.row_elems / px.col_scale);

    // Clip once; planning and filling then never check bounds.
    std::vector<Region> clipped;
    clipped.reserve(n_regions);
    for (std::size_t i = 0; i < n_regions; ++i) {
        Region r = regions[i];
        r.r0 = clamp(r.r0, 0, rows);
        r.r1 = clamp(r.r1, 0, rows);
        r.c0 = clamp(r.c0, 0, cols);
        r.c1 = clamp(r.c1, 0, cols);
        r.f0 = clamp(r.f0, 0, frames);
        r.f1 = clamp(r.f1, 0, frames);
        if (r.r0 < r.r1 && r.c0 < r.c1 && r.f0 < r.f1) clipped.push_back(r);
    }
    if (clipped.empty()) return;

    std::uint64_t pattern8 = 0;
    {
        std::uint8_t rep[8];
        for (std::size_t i = 0; i < 8; ++i) rep[i] = pattern[i % px.itemsize];
        std::memcpy(&pattern8, rep, 8);
    }
    const std::size_t row_bytes = px.row_elems * px.itemsize;
    const std::size_t plane_bytes = row_bytes * px.rows;
    const std::size_t col_bytes = px.col_scale * px.itemsize;

    if (clipped.size() == 1) {
        // One rectangle needs no plan: its rows are at a constant stride, which the hardware
        // prefetcher follows, and skipping the planner keeps small masks as cheap as numpy's.
        const Region& r = clipped[0];
        const std::size_t p0 = static_cast<std::size_t>(r.f0) * px.planes;
        const std::size_t p1 = static_cast<std::size_t>(r.f1) * px.planes;
        const std::size_t off = static_cast<std::size_t>(r.c0) * col_bytes;
        const std::size_t n = static_cast<std::size_t>(r.c1 - r.c0) * col_bytes;
        const std::size_t nrows = static_cast<std::size_t>(r.r1 - r.r0);
        Coalescer out(fills_for(backend), (p1 - p0) * nrows * n >= kStreamTotalBytes, pattern8,
                      px.itemsize);
        for (std::size_t p = p0; p < p1; ++p) {
            std::uint8_t* line =
                px.data + p * plane_bytes + static_cast<std::size_t>(r.r0) * row_bytes + off;
            for (std::size_t k = 0; k < nrows; ++k, line += row_bytes) out.add(line, n);
        }
        out.flush();
        return;
    }

    // Sweep the frame axis: between consecutive frame edges the set of active regions is
    // constant, so those frames share one plan. Regions enter in f0 order and leave when
    // f1 is reached, so the sweep costs O(n log n) however many distinct ranges there are.
    std::vector<std::int64_t> frame_edges;
    frame_edges.reserve(2 * clipped.size());
    for (const Region& r : clipped) {
        frame_edges.push_back(r.f0);
        frame_edges.push_back(r.f1);
    }
    std::sort(frame_edges.begin(), frame_edges.end());
    frame_edges.erase(std::unique(frame_edges.begin(), frame_edges.end()), frame_edges.end());
    std::vector<const Region*> by_f0(clipped.size());
    for (std::size_t i = 0; i < clipped.size(); ++i) by_f0[i] = &clipped[i];
    std::stable_sort(by_f0.begin(), by_f0.end(),
                     [](const Region* a, const Region* b) { return a->f0 < b->f0; });

    // Streaming stores are chosen from the regions' total area (overlaps counted twice, a
    // heuristic only), known before the first fill.
    double area_bytes = 0;
    for (const Region& r : clipped)
        area_bytes += static_cast<double>(r.r1 - r.r0) * static_cast<double>(r.c1 - r.c0) *
                      static_cast<double>(r.f1 - r.f0) * static_cast<double>(px.planes * col_bytes);
    Coalescer out(fills_for(backend), area_bytes >= static_cast<double>(kStreamTotalBytes),
                  pattern8, px.itemsize);

    // Planned per segment and filled right away: the span list of one frame's regions stays
    // in L1 however many frames the call covers.
    std::vector<Span> spans;
    std::vector<const Region*> active;
    std::vector<std::int64_t> row_edges;
    std::vector<std::pair<std::int64_t, std::int64_t>> runs;
    std::size_t next = 0;
    std::size_t plane0 = 0, plane1 = 0;  // planes of the pending plan
    for (std::size_t e = 0; e + 1 < frame_edges.size(); ++e) {
        const std::int64_t fa = frame_edges[e], fb = frame_edges[e + 1];
        const auto old_size = active.size();
        active.erase(std::remove_if(active.begin(), active.end(),
                                    [fa](const Region* r) { return r->f1 <= fa; }),
                     active.end());
        bool changed = active.size() != old_size;
        for (; next < by_f0.size() && by_f0[next]->f0 <= fa; ++next) {
            active.push_back(by_f0[next]);
            changed = true;
        }
        const std::size_t pa = static_cast<std::size_t>(fa) * px.planes;
        const std::size_t pb = static_cast<std::size_t>(fb) * px.planes;
        if (!changed && !active.empty() && plane1 == pa) {
            plane1 = pb;  // same regions as the frames before: reuse the plan
            continue;
        }
        fill_planes(out, px.data, plane_bytes, spans, plane0, plane1);
        plane0 = plane1 = 0;
        if (active.empty()) continue;
        std::stable_sort(active.begin(), active.end(),
                         [](const Region* a, const Region* b) { return a->c0 < b->c0; });
        spans.clear();
        plan_spans(active, row_bytes, col_bytes, row_edges, runs, spans);
        plane0 = pa;
        plane1 = pb;
    }
    fill_planes(out, px.data, plane_bytes, spans, plane0, plane1);
    out.flush();
}

void mask_regions(const PixelLayout& px, const Region* regions, std::size_t n_regions,
                  const std::uint8_t* pattern) {
    mask_regions(active_backend(), px, regions, n_regions, pattern);
}

void fix_unused_bits(Backend backend, void* data, std::size_t count, std::size_t itemsize,
                     unsigned bits_stored, bool is_signed) {
    if (itemsize != 2 && itemsize != 4)
        throw std::invalid_argument("fix_unused_bits: only 16- and 32-bit samples have unused bits");
    if (bits_stored < 1 || bits_stored > 8 * itemsize)
        throw std::invalid_argument("fix_unused_bits: bits_stored out of range for the container");
    if (bits_stored == 8 * itemsize) return;
#ifdef MEDVEIL_HAVE_AVX2
    if (has_avx2(backend)) {
        detail::fix_bits_avx2(data, count, itemsize, bits_stored, is_signed);
        return;
    }
#endif
    (void)backend;
    detail::fix_bits_ref(data, count, itemsize, bits_stored, is_signed);
}

void fix_unused_bits(void* data, std::size_t count, std::size_t itemsize, unsigned bits_stored,
                     bool is_signed) {
    fix_unused_bits(active_backend(), data, count, itemsize, bits_stored, is_signed);
}

}  // namespace medveil

// Region planning shared by every backend: clip, group by frame, merge per row, and
// coalesce adjacent runs so that full-width bands become one long fill.
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <utility>
#include <vector>

#include "medveil/mask.hpp"

namespace medveil {
namespace {

using FillFn = void (*)(std::uint8_t*, std::size_t, std::uint64_t, std::size_t);

FillFn fill_for(Backend b) {
#ifdef MEDVEIL_HAVE_AVX2
    if (b == Backend::avx2) return detail::fill_avx2;
#endif
    (void)b;
    return detail::fill_ref;
}

constexpr std::int64_t kPrefetchRows = 6;
constexpr std::size_t kPrefetchMaxBytes = 1024;

std::int64_t clamp(std::int64_t v, std::int64_t lo, std::int64_t hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

// Collects byte runs and writes them only when the next run is not adjacent.
class Coalescer {
public:
    Coalescer(FillFn fill, std::uint64_t pattern8, std::size_t itemsize)
        : fill_(fill), pattern8_(pattern8), itemsize_(itemsize) {}
    void add(std::uint8_t* p, std::size_t n) {
        if (n == 0) return;
        if (start_ != nullptr && start_ + len_ == p) {
            len_ += n;
            return;
        }
        flush();
        start_ = p;
        len_ = n;
    }
    void flush() {
        if (start_ != nullptr) fill_(start_, len_, pattern8_, itemsize_);
        start_ = nullptr;
        len_ = 0;
    }

private:
    FillFn fill_;
    std::uint64_t pattern8_;
    std::size_t itemsize_;
    std::uint8_t* start_ = nullptr;
    std::size_t len_ = 0;
};

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

    // Clip once; the per-row loop then never checks bounds.
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
    std::sort(clipped.begin(), clipped.end(),
              [](const Region& a, const Region& b) { return a.c0 < b.c0; });

    std::uint64_t pattern8 = 0;
    {
        std::uint8_t rep[8];
        for (std::size_t i = 0; i < 8; ++i) rep[i] = pattern[i % px.itemsize];
        std::memcpy(&pattern8, rep, 8);
    }
    Coalescer out(fill_for(backend), pattern8, px.itemsize);
    const std::size_t row_bytes = px.row_elems * px.itemsize;
    const std::size_t plane_bytes = row_bytes * px.rows;
    const std::size_t col_bytes = px.col_scale * px.itemsize;

    // Frames sharing the same set of regions share one plan: the rows split into bands at
    // every region edge, and each band's merged column runs are computed once.
    std::vector<std::int64_t> frame_edges;
    for (const Region& r : clipped) {
        frame_edges.push_back(r.f0);
        frame_edges.push_back(r.f1);
    }
    std::sort(frame_edges.begin(), frame_edges.end());
    frame_edges.erase(std::unique(frame_edges.begin(), frame_edges.end()), frame_edges.end());

    struct Band {
        std::int64_t r0, r1;
        std::size_t first, last;  // runs[first..last)
    };
    std::vector<Band> bands;
    std::vector<std::pair<std::int64_t, std::int64_t>> runs;
    std::vector<const Region*> active;
    std::vector<std::int64_t> row_edges;

    for (std::size_t e = 0; e + 1 < frame_edges.size(); ++e) {
        const std::int64_t fa = frame_edges[e], fb = frame_edges[e + 1];
        active.clear();
        row_edges.clear();
        for (const Region& r : clipped) {
            if (r.f0 <= fa && fa < r.f1) {
                active.push_back(&r);  // stays sorted by c0
                row_edges.push_back(r.r0);
                row_edges.push_back(r.r1);
            }
        }
        if (active.empty()) continue;
        std::sort(row_edges.begin(), row_edges.end());
        row_edges.erase(std::unique(row_edges.begin(), row_edges.end()), row_edges.end());
        bands.clear();
        runs.clear();
        for (std::size_t b = 0; b + 1 < row_edges.size(); ++b) {
            const std::int64_t ra = row_edges[b], rb = row_edges[b + 1];
            const std::size_t first = runs.size();
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
            if (runs.size() > first) bands.push_back(Band{ra, rb, first, runs.size()});
        }
        for (std::int64_t f = fa; f < fb; ++f) {
            for (std::size_t p = 0; p < px.planes; ++p) {
                std::uint8_t* plane =
                    px.data + (static_cast<std::size_t>(f) * px.planes + p) * plane_bytes;
                for (const Band& band : bands) {
                    for (std::int64_t row = band.r0; row < band.r1; ++row) {
                        std::uint8_t* line = plane + static_cast<std::size_t>(row) * row_bytes;
                        // Short runs scattered over a large stack are bound by memory latency:
                        // ask for the lines a few rows ahead so their misses overlap.
                        if (row + kPrefetchRows < band.r1) {
                            std::uint8_t* ahead = line + kPrefetchRows * row_bytes;
                            for (std::size_t k = band.first; k < band.last; ++k) {
                                const std::size_t b0 = static_cast<std::size_t>(runs[k].first) * col_bytes;
                                const std::size_t b1 = static_cast<std::size_t>(runs[k].second) * col_bytes;
                                if (b1 - b0 > kPrefetchMaxBytes) continue;  // long runs stream fine
                                for (std::size_t o = b0; o < b1; o += 64) __builtin_prefetch(ahead + o, 1);
                                __builtin_prefetch(ahead + b1 - 1, 1);
                            }
                        }
                        for (std::size_t k = band.first; k < band.last; ++k)
                            out.add(line + static_cast<std::size_t>(runs[k].first) * col_bytes,
                                    static_cast<std::size_t>(runs[k].second - runs[k].first) *
                                        col_bytes);
                    }
                }
            }
        }
    }
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
    if (backend == Backend::avx2) {
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

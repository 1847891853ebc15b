// Scalar text screen and the frame driver; see textscreen.hpp for the exact algorithm.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "medveil/textscreen.hpp"

namespace medveil {
namespace {

struct Run {
    std::int32_t row, c0, c1;  // [c0, c1)
};

// A run's pixels' contrast |p*N - S| / N: as integer |p*N - S| summed over the pixels
// with a full (2r+1)^2 window (divided once per glyph), and as the double sum of the
// others. Kept apart from Run: without scores it is not computed at all.
struct RunContrast {
    std::int64_t full;
    double part;
};

struct Comp {
    std::int64_t r0, r1, c0, c1, area;
    std::int64_t full;
    double part;
};

std::uint32_t find_root(std::vector<std::uint32_t>& parent, std::uint32_t i) {
    while (parent[i] != i) {
        parent[i] = parent[parent[i]];  // path halving keeps the trees flat
        i = parent[i];
    }
    return i;
}

void unite(std::vector<std::uint32_t>& parent, std::uint32_t a, std::uint32_t b) {
    a = find_root(parent, a);
    b = find_root(parent, b);
    if (a == b) return;
    if (a < b) parent[b] = a; else parent[a] = b;
}

inline void set_bit(std::uint64_t* w, std::size_t c, bool on) {
    const std::uint64_t m = std::uint64_t{1} << (c & 63);
    if (on) w[c >> 6] |= m; else w[c >> 6] &= ~m;
}

// Per-polarity state: runs of the current frame and where each row's runs start.
struct Pass {
    std::vector<Run> runs;
    std::vector<RunContrast> contrasts;  // of each run, when scores are computed
    std::size_t prev_begin = 0, prev_end = 0;  // runs of the previous row
    std::vector<std::uint32_t> parent;
    // Marks, one bit per column, of the row being labelled (bits), the one above it (up)
    // and the one below it (down): a row is labelled once the next one is classified.
    std::vector<std::uint64_t> bits, up, down, near;
    bool drop_isolated = true;  // see split_runs
    bool scores = true;         // compute the runs' contrast
    std::vector<std::uint32_t> starts, stops;  // the row's runs, before they are stored
    std::vector<std::uint32_t> prev_starts, prev_stops;  // and the previous row's
    std::vector<std::uint32_t> comp_of;        // component of each root run
    std::vector<Comp> comps;

    void reset() {
        runs.clear();
        contrasts.clear();
        parent.clear();
        prev_begin = prev_end = 0;
    }

    // Appends one run. Fields are stored one by one: building the struct first and
    // copying it made the compiler reload it wider than it was written, which stalls.
    void push_run(std::int32_t y, std::size_t c0, std::size_t c1) {
        runs.emplace_back();
        Run& rr = runs.back();
        rr.row = y;
        rr.c0 = static_cast<std::int32_t>(c0);
        rr.c1 = static_cast<std::int32_t>(c1);
        parent.push_back(static_cast<std::uint32_t>(parent.size()));
    }

    // Starts and stops of the runs of set bits of the row, in column order.
    std::size_t split_runs(std::size_t cols) {
        const std::size_t nwords = bits.size();
        starts.resize(cols / 2 + 2);
        stops.resize(cols / 2 + 2);
        std::uint32_t* st = starts.data();
        std::uint32_t* sp = stops.data();
        std::size_t ns = 0, ne = 0;
        std::uint64_t prev = 0;  // top bit of the previous word
        for (std::size_t i = 0; i < nwords; ++i) {
            const std::uint64_t x = bits[i];
            if ((x | prev) == 0) continue;
            // A run starts at a set bit after a clear one, and stops at a clear bit after
            // a set one.
            const std::uint64_t before = (x << 1) | prev;
            std::uint64_t s = x & ~before, e = ~x & before;
            const auto base = static_cast<std::uint32_t>(i * 64);
            while (s) {
                st[ns++] = base + static_cast<std::uint32_t>(__builtin_ctzll(s));
                s &= s - 1;
            }
            while (e) {
                sp[ne++] = base + static_cast<std::uint32_t>(__builtin_ctzll(e));
                e &= e - 1;
            }
            prev = x >> 63;
        }
        // Bits past the last column are clear, so only a full last word leaves a run open.
        if (ne < ns) sp[ne++] = static_cast<std::uint32_t>(cols);
        if (!drop_isolated) return ns;
        // A run with no marked pixel in the rows above and below (columns c0 - 1 .. c1) is
        // a component one row high: never a glyph when min_height >= 2, and joined to no
        // other component. Most runs in speckle and noise are such, so they are dropped
        // here, before the contrast, union-find and component passes.
        near.resize(nwords);
        for (std::size_t i = 0; i < nwords; ++i) near[i] = up[i] | down[i];
        const std::uint64_t* nb = near.data();
        std::size_t kept = 0;
        for (std::size_t i = 0; i < ns; ++i) {
            const std::size_t lo = st[i] > 0 ? st[i] - 1 : 0;
            const std::size_t hi = std::min<std::size_t>(sp[i], cols - 1);  // inclusive
            const std::size_t a = lo >> 6;
            // Kept or not is data (unpredictable): compacted without a branch on it.
            const bool keep =
                a == (hi >> 6)
                    ? (nb[a] & (~std::uint64_t{0} << (lo & 63)) &
                       (~std::uint64_t{0} >> (63 - (hi & 63)))) != 0
                    : any_bit(nb, lo, hi);
            st[kept] = st[i];
            sp[kept] = sp[i];
            kept += keep;
        }
        return kept;
    }

    // True when any bit lo..hi (inclusive) of w is set.
    static bool any_bit(const std::uint64_t* w, std::size_t lo, std::size_t hi) {
        const std::size_t a = lo >> 6, b = hi >> 6;
        const std::uint64_t first = ~std::uint64_t{0} << (lo & 63);
        const std::uint64_t last = ~std::uint64_t{0} >> (63 - (hi & 63));
        if (a == b) return (w[a] & first & last) != 0;
        if (w[a] & first) return true;
        for (std::size_t i = a + 1; i < b; ++i)
            if (w[i]) return true;
        return (w[b] & last) != 0;
    }

    // Rotates the bit rows: the labelled row becomes the one above, the one below becomes
    // the one to label, and the old row above is reused for the next row's marks (returned).
    std::uint64_t* advance() {
        up.swap(bits);    // up = labelled row, bits = old up
        bits.swap(down);  // bits = row to label, down = old up (to overwrite)
        return down.data();
    }

    // Extracts the runs of one marked row and links them to the previous row's runs.
    // `px` is the image row, `prefix` its row of vertical window sums as prefix sums
    // (modular in Acc), and the window of column c spans [lo(c), hi(c)] with
    // rowcount * colcount[c] pixels.
    template <typename Acc>
    void add_row(std::int32_t y, std::size_t cols, std::size_t r, const std::uint8_t* px,
                 const Acc* prefix, std::int32_t rowcount, const std::int32_t* colcount) {
        const std::size_t begin = runs.size();
        const std::size_t n = split_runs(cols);
        const bool full_rows = rowcount == static_cast<std::int32_t>(2 * r + 1);
        const std::size_t inner1 = cols > r ? cols - r : 0;
        const std::int32_t icnt = rowcount * static_cast<std::int32_t>(2 * r + 1);
        if (!scores) {
            for (std::size_t k = 0; k < n; ++k) push_run(y, starts[k], stops[k]);
        }
        for (std::size_t k = 0; scores && k < n; ++k) {
            const std::size_t start = starts[k], stop = stops[k];
            double contrast = 0.0;
            std::int64_t full = 0;
            // Marked pixels are few, so their contrast is recomputed here rather than
            // stored for every pixel by the classifying loop. Interior columns share one
            // pixel count: their |p*N - S| add up exactly as integers, and are divided
            // once per run (once per glyph for the rows whose window is not clipped).
            const std::size_t in0 = std::max(start, std::min(r, stop));
            const std::size_t in1 = std::max(in0, std::min(stop, inner1));
            auto border = [&](std::size_t x) {
                const std::size_t lo = x >= r ? x - r : 0, hi = std::min(x + r, cols - 1);
                const auto sum = static_cast<std::int32_t>(static_cast<Acc>(prefix[hi + 1] -
                                                                            prefix[lo]));
                const std::int32_t cnt = rowcount * colcount[x];
                const std::int32_t d = static_cast<std::int32_t>(px[x]) * cnt - sum;
                contrast += static_cast<double>(d < 0 ? -d : d) / static_cast<double>(cnt);
            };
            for (std::size_t c = start; c < in0; ++c) border(c);
            if (in1 > in0) {
                std::int64_t acc = 0;
                for (std::size_t c = in0; c < in1; ++c) {
                    const auto sum = static_cast<std::int32_t>(
                        static_cast<Acc>(prefix[c + r + 1] - prefix[c - r]));
                    const std::int32_t d = static_cast<std::int32_t>(px[c]) * icnt - sum;
                    acc += d < 0 ? -d : d;
                }
                if (full_rows)
                    full = acc;
                else
                    contrast += static_cast<double>(acc) / static_cast<double>(icnt);
            }
            for (std::size_t c = in1; c < stop; ++c) border(c);
            push_run(y, start, stop);
            contrasts.emplace_back();
            contrasts.back().full = full;
            contrasts.back().part = contrast;
        }
        const std::size_t end = runs.size();
        // 8-connectivity: runs [a0, a1) and [b0, b1) on adjacent rows touch when
        // a0 <= b1 and b0 <= a1. Read from the compact per-row arrays.
        const std::size_t np = prev_end - prev_begin;
        const std::uint32_t* ps = prev_starts.data();
        const std::uint32_t* pe = prev_stops.data();
        std::size_t j = 0;
        for (std::size_t i = 0; i < n; ++i) {
            const std::uint32_t a0 = starts[i], a1 = stops[i];
            while (j < np && pe[j] < a0) ++j;
            for (std::size_t k = j; k < np && ps[k] <= a1; ++k)
                unite(parent, static_cast<std::uint32_t>(begin + i),
                      static_cast<std::uint32_t>(prev_begin + k));
        }
        prev_begin = begin;
        prev_end = end;
        starts.swap(prev_starts);
        stops.swap(prev_stops);
    }

    void finish(std::int64_t frame, const TextScreenParams& p, std::vector<TextBox>& out) {
        const std::size_t nr = runs.size();
        if (nr == 0) return;
        const double full_cnt = static_cast<double>((2 * p.radius + 1) * (2 * p.radius + 1));
        comp_of.resize(nr);
        comps.clear();
        for (std::size_t i = 0; i < nr; ++i) {
            // unite() keeps the smallest index as the root, so a component's root is its
            // first run: seen before any other run of it.
            const std::uint32_t r = find_root(parent, static_cast<std::uint32_t>(i));
            const Run& run = runs[i];
            if (r == i) {
                comp_of[i] = static_cast<std::uint32_t>(comps.size());
                comps.emplace_back();
                Comp& cp = comps.back();
                cp.r0 = run.row;
                cp.r1 = run.row + 1;
                cp.c0 = run.c0;
                cp.c1 = run.c1;
                cp.area = run.c1 - run.c0;
                cp.full = scores ? contrasts[i].full : 0;
                cp.part = scores ? contrasts[i].part : 0.0;
                continue;
            }
            Comp& cp = comps[comp_of[r]];
            // Runs come in row order: the component's first row is its root's.
            cp.r1 = std::max<std::int64_t>(cp.r1, run.row + 1);
            cp.c0 = std::min<std::int64_t>(cp.c0, run.c0);
            cp.c1 = std::max<std::int64_t>(cp.c1, run.c1);
            cp.area += run.c1 - run.c0;
            if (scores) {
                cp.full += contrasts[i].full;
                cp.part += contrasts[i].part;
            }
        }
        std::vector<Comp> glyphs;
        for (const Comp& cp : comps) {
            const std::int64_t h = cp.r1 - cp.r0, w = cp.c1 - cp.c0;
            if (h < p.min_height || h > p.max_height || w > 4 * h) continue;
            if (10 * cp.area < h * w) continue;
            // Solid blobs are not glyphs, except thin bars (I, l, 1).
            if (20 * cp.area > 19 * h * w && 4 * w > h) continue;
            glyphs.push_back(cp);
        }
        const std::size_t ng = glyphs.size();
        if (ng < 2) return;
        std::sort(glyphs.begin(), glyphs.end(),
                  [](const Comp& a, const Comp& b) { return a.c0 < b.c0; });
        std::vector<std::uint32_t> gp(ng);
        std::iota(gp.begin(), gp.end(), 0u);
        const std::int64_t max_h = p.max_height;
        for (std::size_t i = 0; i < ng; ++i) {
            const Comp& a = glyphs[i];
            const std::int64_t ha = a.r1 - a.r0;
            // A partner is at most twice as tall as a (and at most max_h), and its gap
            // below 1.5 times the taller height.
            const std::int64_t reach = 3 * std::min(max_h, 2 * ha);
            for (std::size_t j = i + 1; j < ng; ++j) {
                const Comp& b = glyphs[j];
                // Sorted by c0: every later glyph is at least this far right.
                if (2 * (b.c0 - a.c1) >= reach) break;
                const std::int64_t hb = b.r1 - b.r0;
                const std::int64_t lo = std::min(ha, hb), hi = std::max(ha, hb);
                if (hi > 2 * lo) continue;
                const std::int64_t overlap = std::min(a.r1, b.r1) - std::max(a.r0, b.r0);
                if (2 * overlap < lo) continue;
                const std::int64_t gap = std::max(b.c0 - a.c1, a.c0 - b.c1);
                if (2 * gap >= 3 * hi) continue;
                unite(gp, static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(j));
            }
        }
        std::vector<std::int64_t> line_of(ng, -1);
        std::vector<TextBox> lines;
        std::vector<double> contrast;
        for (std::size_t i = 0; i < ng; ++i) {
            const std::uint32_t r = find_root(gp, static_cast<std::uint32_t>(i));
            const Comp& g = glyphs[i];
            const double gc =
                (static_cast<double>(g.full) / full_cnt + g.part) / static_cast<double>(g.area);
            if (line_of[r] < 0) {
                line_of[r] = static_cast<std::int64_t>(lines.size());
                lines.push_back(TextBox{frame, g.r0, g.r1, g.c0, g.c1, 0, 0.0});
                contrast.push_back(0.0);
            }
            const auto li = static_cast<std::size_t>(line_of[r]);
            TextBox& b = lines[li];
            b.row0 = std::min(b.row0, g.r0);
            b.row1 = std::max(b.row1, g.r1);
            b.col0 = std::min(b.col0, g.c0);
            b.col1 = std::max(b.col1, g.c1);
            b.glyphs += 1;
            contrast[li] += gc;
        }
        const std::size_t first = out.size();
        for (std::size_t li = 0; li < lines.size(); ++li) {
            if (lines[li].glyphs < 2) continue;
            // glyphs * mean contrast is the glyphs' summed contrast.
            lines[li].score = contrast[li];
            out.push_back(lines[li]);
        }
        std::sort(out.begin() + static_cast<std::ptrdiff_t>(first), out.end(),
                  [](const TextBox& a, const TextBox& b) {
                      if (a.row0 != b.row0) return a.row0 < b.row0;
                      if (a.col0 != b.col0) return a.col0 < b.col0;
                      if (a.row1 != b.row1) return a.row1 < b.row1;
                      return a.col1 < b.col1;
                  });
    }
};

// The noise threshold of one frame (see textscreen.hpp). The median is found by counting:
// usually one count tells that it is too low to raise the threshold above the base.
int noise_threshold(const detail::TextScreenKernels& k, const std::uint8_t* frame,
                    std::size_t rows, std::size_t cols, const TextScreenParams& p,
                    std::vector<std::uint8_t>& diffs) {
    if (cols < 2) return p.threshold;
    const auto step = static_cast<std::size_t>(p.noise_step);
    const std::size_t m = cols - 1, sampled = (rows + step - 1) / step;
    diffs.resize(sampled * m);
    for (std::size_t i = 0; i < sampled; ++i) {
        k.absdiff(frame + i * step * cols, cols, diffs.data() + i * m);
    }
    const std::size_t n = diffs.size();
    // The threshold a median of v gives, before the base: monotone in v.
    auto from_median = [&](int v) {
        const double t = std::ceil(p.noise_factor * (static_cast<double>(v) / 0.9539));
        return t >= static_cast<double>(p.noise_max) ? p.noise_max : static_cast<int>(t);
    };
    auto at_least_half = [&](int v) {
        return 2 * k.count_le(diffs.data(), n, static_cast<std::uint8_t>(v)) >= n;
    };
    int lo = 0;  // the median is >= lo
    int kb = -1;  // the largest median that leaves the base threshold
    while (kb < 255 && from_median(kb + 1) <= p.threshold) ++kb;
    if (kb >= 0) {
        if (at_least_half(kb)) return p.threshold;
        lo = kb + 1;
    }
    int hi = 255;  // at_least_half(255) holds
    while (lo < hi) {
        const int mid = lo + (hi - lo) / 2;
        if (at_least_half(mid)) hi = mid; else lo = mid + 1;
    }
    return std::max(p.threshold, from_median(lo));
}

// Sets the bits of the border columns (c < r or c >= cols - r), whose windows are
// clipped, with their own pixel counts.
template <typename Acc>
void classify_borders(const Acc* P, const std::uint8_t* row, std::size_t cols, std::size_t r,
                      std::int32_t rowcount, const std::int32_t* colcount, std::int32_t t,
                      std::uint64_t* mb, std::uint64_t* md) {
    auto one = [&](std::size_t c) {
        const std::size_t lo = c >= r ? c - r : 0, hi = std::min(c + r, cols - 1);
        const auto sum = static_cast<std::int32_t>(static_cast<Acc>(P[hi + 1] - P[lo]));
        const std::int32_t cnt = rowcount * colcount[c];
        const std::int32_t v = static_cast<std::int32_t>(row[c]) * cnt;
        set_bit(mb, c, v > sum + t * cnt);
        set_bit(md, c, v + t * cnt < sum);
    };
    const std::size_t inner0 = std::min(r, cols);
    const std::size_t inner1 = cols > r ? std::max(cols - r, inner0) : inner0;
    for (std::size_t c = 0; c < inner0; ++c) one(c);
    for (std::size_t c = inner1; c < cols; ++c) one(c);
}

// Pad of the prefix rows: classify16 reads p[c - r] .. p[c + r + 1] for every column.
constexpr std::size_t kPad = 64;

void screen_frames(const detail::TextScreenKernels& k, const std::uint8_t* data,
                   std::size_t frames, std::size_t rows, std::size_t cols,
                   std::size_t channels, const TextScreenParams& p,
                   const std::int32_t* thresholds_in, std::int32_t* thresholds_out,
                   std::vector<TextBox>& out) {
    const auto r = static_cast<std::size_t>(p.radius);
    // A (2r+1)^2 window of 8-bit pixels sums to < 2^16 when r <= 7 (225 * 255).
    const bool narrow = r <= 7;
    std::vector<std::int32_t> colcount(cols);
    for (std::size_t c = 0; c < cols; ++c) {
        const std::size_t lo = c >= r ? c - r : 0, hi = std::min(c + r, cols - 1);
        colcount[c] = static_cast<std::int32_t>(hi - lo + 1);
    }
    // Vertical window sums and their prefix rows (of this row and the previous one, which
    // is labelled now), in the accumulator width of the path.
    std::vector<std::uint16_t> colsum16(narrow ? cols : 0);
    std::vector<std::uint16_t> pbuf16[2];
    std::vector<std::uint32_t> colsum32(narrow ? 0 : cols), prefix32[2];
    for (auto& b : pbuf16) b.assign(narrow ? cols + 1 + 2 * kPad : 0, 0);
    for (auto& b : prefix32) b.assign(narrow ? 0 : cols + 1, 0);
    const std::size_t nwords = (cols + 63) / 64;
    Pass bright, dark;
    for (Pass* ps : {&bright, &dark}) {
        ps->bits.assign(nwords, 0);
        ps->up.assign(nwords, 0);
        ps->down.assign(nwords, 0);
        ps->drop_isolated = p.min_height >= 2;
        ps->scores = p.scores;
    }
    // RGB frames are converted to luma whole, one at a time, into this buffer: one
    // streaming pass over the RGB (each byte read once) measured 12 % faster than
    // converting rows into a ring as the window reaches them, where the conversion
    // waits on memory between the other per-row work.
    std::vector<std::uint8_t> luma(channels == 1 ? 0 : rows * cols), diffs;
    auto rowcount_of = [&](std::size_t y) {
        const std::size_t ylo = y >= r ? y - r : 0, yhi = std::min(y + r, rows - 1);
        return static_cast<std::int32_t>(yhi - ylo + 1);
    };
    for (std::size_t f = 0; f < frames; ++f) {
        const std::uint8_t* img = data + f * rows * cols * channels;
        if (channels != 1) {
            k.luma(img, rows * cols, luma.data());
            img = luma.data();
        }
        std::int32_t t = p.threshold;
        if (thresholds_in != nullptr)
            t = thresholds_in[f];
        else if (p.noise_factor > 0.0)
            t = noise_threshold(k, img, rows, cols, p, diffs);
        if (thresholds_out != nullptr) thresholds_out[f] = t;
        for (Pass* ps : {&bright, &dark}) {
            ps->reset();
            // Becomes the row above row 0.
            std::fill(ps->bits.begin(), ps->bits.end(), 0);
        }
        const std::size_t top = std::min(r, rows - 1);
        if (narrow) {
            std::fill(colsum16.begin(), colsum16.end(), std::uint16_t{0});
            for (std::size_t y = 0; y <= top; ++y)
                k.colsum16(colsum16.data(), img + y * cols, nullptr, cols);
        } else {
            std::fill(colsum32.begin(), colsum32.end(), 0u);
            for (std::size_t y = 0; y <= top; ++y) {
                const std::uint8_t* px = img + y * cols;
                for (std::size_t c = 0; c < cols; ++c) colsum32[c] += px[c];
            }
        }
        // Labels row y of both polarities; their prefix rows of y are in buffer y % 2.
        auto label = [&](std::size_t y) {
            const std::uint8_t* row = img + y * cols;
            const auto yy = static_cast<std::int32_t>(y);
            const std::int32_t rc = rowcount_of(y);
            for (Pass* ps : {&bright, &dark}) {
                if (narrow)
                    ps->add_row(yy, cols, r, row,
                                static_cast<const std::uint16_t*>(pbuf16[y % 2].data() + kPad),
                                rc, colcount.data());
                else
                    ps->add_row(yy, cols, r, row,
                                static_cast<const std::uint32_t*>(prefix32[y % 2].data()), rc,
                                colcount.data());
            }
        };
        for (std::size_t y = 0; y < rows; ++y) {
            if (y > 0) {
                const bool has_add = y + r < rows, has_sub = y > r;
                const std::uint8_t* add = has_add ? img + (y + r) * cols : nullptr;
                const std::uint8_t* sub = has_sub ? img + (y - r - 1) * cols : nullptr;
                if (narrow) {
                    if (has_add || has_sub) k.colsum16(colsum16.data(), add, sub, cols);
                } else {
                    // Window sums stay below 2^32, so modular uint32 arithmetic is exact.
                    for (std::size_t c = 0; c < cols; ++c)
                        colsum32[c] = colsum32[c] + (add ? add[c] : 0u) - (sub ? sub[c] : 0u);
                }
            }
            const std::int32_t rowcount = rowcount_of(y);
            const std::uint8_t* row = img + y * cols;
            // This row's marks go below the row labelled next.
            std::uint64_t* mb = bright.down.data();
            std::uint64_t* md = dark.down.data();
            const std::int32_t icnt = rowcount * static_cast<std::int32_t>(2 * r + 1);
            if (narrow) {
                std::uint16_t* P = pbuf16[y % 2].data() + kPad;
                P[0] = 0;
                k.prefix16(colsum16.data(), cols, P);
                // Past the row the pad repeats the total; before it, zeros (set at
                // allocation). Only border columns read them, and those are redone.
                std::fill(P + cols + 1, P + cols + 1 + kPad, P[cols]);
                k.classify16(P, row, cols, r, static_cast<std::uint32_t>(icnt),
                             static_cast<std::uint32_t>(t * icnt), mb, md);
                classify_borders(static_cast<const std::uint16_t*>(P), row, cols, r, rowcount,
                                 colcount.data(), t, mb, md);
            } else {
                std::uint32_t* P = prefix32[y % 2].data();
                P[0] = 0;
                for (std::size_t c = 0; c < cols; ++c) P[c + 1] = P[c] + colsum32[c];
                std::fill(mb, mb + nwords, 0);
                std::fill(md, md + nwords, 0);
                for (std::size_t c = r; c + r < cols; ++c) {
                    const auto sum = static_cast<std::int32_t>(P[c + r + 1] - P[c - r]);
                    const std::int32_t v = static_cast<std::int32_t>(row[c]) * icnt;
                    if (v > sum + t * icnt) set_bit(mb, c, true);
                    if (v + t * icnt < sum) set_bit(md, c, true);
                }
                classify_borders(static_cast<const std::uint32_t*>(P), row, cols, r, rowcount,
                                 colcount.data(), t, mb, md);
            }
            if (!p.bright) std::fill(mb, mb + nwords, 0);
            if (!p.dark) std::fill(md, md + nwords, 0);
            if (y > 0) label(y - 1);
            bright.advance();
            dark.advance();
        }
        // The last row has no row below it.
        std::fill(bright.down.begin(), bright.down.end(), 0);
        std::fill(dark.down.begin(), dark.down.end(), 0);
        label(rows - 1);
        const auto fi = static_cast<std::int64_t>(f);
        if (p.bright) bright.finish(fi, p, out);
        if (p.dark) dark.finish(fi, p, out);
    }
}

void luma_ref(const std::uint8_t* rgb, std::size_t n, std::uint8_t* out) {
    for (std::size_t i = 0; i < n; ++i) {
        const unsigned v = 77u * rgb[3 * i] + 150u * rgb[3 * i + 1] + 29u * rgb[3 * i + 2] + 128u;
        out[i] = static_cast<std::uint8_t>(v >> 8);
    }
}

void colsum16_ref(std::uint16_t* v, const std::uint8_t* add, const std::uint8_t* sub,
                  std::size_t n) {
    if (add && sub) {
        for (std::size_t i = 0; i < n; ++i)
            v[i] = static_cast<std::uint16_t>(v[i] + add[i] - sub[i]);
    } else if (add) {
        for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::uint16_t>(v[i] + add[i]);
    } else if (sub) {
        for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::uint16_t>(v[i] - sub[i]);
    }
}

void prefix16_ref(const std::uint16_t* v, std::size_t n, std::uint16_t* p) {
    for (std::size_t i = 0; i < n; ++i) p[i + 1] = static_cast<std::uint16_t>(p[i] + v[i]);
}

void classify16_ref(const std::uint16_t* p, const std::uint8_t* px, std::size_t cols,
                    std::size_t r, std::uint32_t cnt, std::uint32_t tc, std::uint64_t* bright,
                    std::uint64_t* dark) {
    const std::size_t nwords = (cols + 63) / 64;
    const auto* base = p - static_cast<std::ptrdiff_t>(r);
    std::size_t w = 0;
#ifdef __SSE2__
    // x86-64 always has SSE2: the baseline build classifies 16 pixels per step with it,
    // the same unsigned saturating 16-bit arithmetic as the AVX2 kernel (compilers do not
    // vectorise the bit packing of the plain loop below).
    const __m128i vcnt = _mm_set1_epi16(static_cast<short>(cnt));
    const __m128i vtc = _mm_set1_epi16(static_cast<short>(tc));
    const __m128i zero = _mm_setzero_si128();
    auto bits16 = [&](std::size_t c, unsigned& bm, unsigned& dm) {
        __m128i s[2], v[2];
        for (int h = 0; h < 2; ++h) {
            const std::size_t x = c + 8 * static_cast<std::size_t>(h);
            s[h] = _mm_sub_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + x + r + 1)),
                                 _mm_loadu_si128(reinterpret_cast<const __m128i*>(base + x)));
            std::uint64_t px8;
            std::memcpy(&px8, px + x, 8);
            v[h] = _mm_mullo_epi16(
                _mm_unpacklo_epi8(_mm_cvtsi64_si128(static_cast<long long>(px8)), zero), vcnt);
        }
        // A lane is "not marked" when its saturating difference is 0; packs keeps order.
        const __m128i nb = _mm_packs_epi16(
            _mm_cmpeq_epi16(_mm_subs_epu16(v[0], _mm_adds_epu16(s[0], vtc)), zero),
            _mm_cmpeq_epi16(_mm_subs_epu16(v[1], _mm_adds_epu16(s[1], vtc)), zero));
        const __m128i nd = _mm_packs_epi16(
            _mm_cmpeq_epi16(_mm_subs_epu16(s[0], _mm_adds_epu16(v[0], vtc)), zero),
            _mm_cmpeq_epi16(_mm_subs_epu16(s[1], _mm_adds_epu16(v[1], vtc)), zero));
        bm = ~static_cast<unsigned>(_mm_movemask_epi8(nb)) & 0xFFFFu;
        dm = ~static_cast<unsigned>(_mm_movemask_epi8(nd)) & 0xFFFFu;
    };
    for (; 64 * w + 64 <= cols; ++w) {
        std::uint64_t b = 0, d = 0;
        for (unsigned q = 0; q < 4; ++q) {
            unsigned bm, dm;
            bits16(64 * w + 16 * q, bm, dm);
            b |= std::uint64_t{bm} << (16 * q);
            d |= std::uint64_t{dm} << (16 * q);
        }
        bright[w] = b;
        dark[w] = d;
    }
#endif
    for (; w < nwords; ++w) {
        std::uint64_t b = 0, d = 0;
        const std::size_t end = std::min(cols, 64 * w + 64);
        for (std::size_t c = 64 * w; c < end; ++c) {
            const std::uint32_t sum = static_cast<std::uint16_t>(p[c + r + 1] - base[c]);
            const std::uint32_t v = px[c] * cnt;
            b |= std::uint64_t{v > sum + tc} << (c & 63);
            d |= std::uint64_t{v + tc < sum} << (c & 63);
        }
        bright[w] = b;
        dark[w] = d;
    }
}

void absdiff_ref(const std::uint8_t* row, std::size_t n, std::uint8_t* out) {
    for (std::size_t i = 0; i + 1 < n; ++i)
        out[i] = static_cast<std::uint8_t>(row[i] > row[i + 1] ? row[i] - row[i + 1]
                                                               : row[i + 1] - row[i]);
}

std::size_t count_le_ref(const std::uint8_t* d, std::size_t n, std::uint8_t k) {
    std::size_t c = 0;
    for (std::size_t i = 0; i < n; ++i) c += d[i] <= k;
    return c;
}

}  // namespace

namespace detail {

const TextScreenKernels kTextScreenRef = {luma_ref,       colsum16_ref, prefix16_ref,
                                          classify16_ref, absdiff_ref,  count_le_ref};

void find_text_boxes_with(const TextScreenKernels& k, const std::uint8_t* data,
                          std::size_t frames, std::size_t rows, std::size_t cols,
                          std::size_t channels, const TextScreenParams& p,
                          const std::int32_t* thresholds_in, std::int32_t* thresholds_out,
                          std::vector<TextBox>& out) {
    if (rows == 0 || cols == 0) {
        // Nothing to screen; the frames still report the threshold they would use.
        for (std::size_t f = 0; thresholds_out != nullptr && f < frames; ++f)
            thresholds_out[f] = thresholds_in != nullptr ? thresholds_in[f] : p.threshold;
        return;
    }
    screen_frames(k, data, frames, rows, cols, channels, p, thresholds_in, thresholds_out, out);
}

}  // namespace detail
}  // namespace medveil

// Scalar text screen; see textscreen.hpp for the exact algorithm it implements.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

#include "medveil/textscreen.hpp"

namespace medveil {
namespace {

struct Run {
    std::int32_t row, c0, c1;  // [c0, c1)
    double contrast;           // sum over its pixels of |p*N - S| / N
};

struct Comp {
    std::int64_t r0, r1, c0, c1, area;
    double contrast;
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

// Per-polarity state: runs of the current frame and where each row's runs start.
struct Pass {
    std::vector<Run> runs;
    std::size_t prev_begin = 0, prev_end = 0;  // runs of the previous row
    std::vector<std::uint32_t> parent;
    std::vector<std::uint8_t> mask;

    void reset() {
        runs.clear();
        parent.clear();
        prev_begin = prev_end = 0;
    }

    // Extracts the runs of one marked row and links them to the previous row's runs.
    // `px` is the image row, `prefix` its row of vertical window sums as prefix sums, and
    // the window of column c spans [lo(c), hi(c)] with rowcount * colcount[c] pixels.
    void add_row(std::int32_t y, std::size_t cols, std::size_t r, const std::uint8_t* px,
                 const std::uint32_t* prefix, std::int32_t rowcount,
                 const std::int32_t* colcount) {
        const std::size_t begin = runs.size();
        const std::uint8_t* m = mask.data();
        std::size_t c = 0;
        while (c < cols) {
            // Most of a frame is background: skip eight unmarked pixels at a time.
            if (c + 8 <= cols) {
                std::uint64_t w;
                std::memcpy(&w, m + c, 8);
                if (w == 0) { c += 8; continue; }
            }
            if (!m[c]) { ++c; continue; }
            const std::size_t start = c;
            double contrast = 0.0;
            // Marked pixels are few, so their contrast is recomputed here rather than
            // stored for every pixel by the classifying loop.
            while (c < cols && m[c]) {
                const std::size_t lo = c >= r ? c - r : 0, hi = std::min(c + r, cols - 1);
                const auto sum = static_cast<std::int32_t>(prefix[hi + 1] - prefix[lo]);
                const std::int32_t cnt = rowcount * colcount[c];
                const std::int32_t d = static_cast<std::int32_t>(px[c]) * cnt - sum;
                contrast += static_cast<double>(d < 0 ? -d : d) / static_cast<double>(cnt);
                ++c;
            }
            runs.push_back(Run{y, static_cast<std::int32_t>(start), static_cast<std::int32_t>(c),
                               contrast});
            parent.push_back(static_cast<std::uint32_t>(parent.size()));
        }
        const std::size_t end = runs.size();
        // 8-connectivity: runs [a0, a1) and [b0, b1) on adjacent rows touch when
        // a0 <= b1 and b0 <= a1.
        std::size_t j = prev_begin;
        for (std::size_t i = begin; i < end; ++i) {
            while (j < prev_end && runs[j].c1 < runs[i].c0) ++j;
            for (std::size_t k = j; k < prev_end && runs[k].c0 <= runs[i].c1; ++k)
                unite(parent, static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(k));
        }
        prev_begin = begin;
        prev_end = end;
    }

    void finish(std::int64_t frame, const TextScreenParams& p, std::vector<TextBox>& out) {
        const std::size_t nr = runs.size();
        if (nr == 0) return;
        std::vector<std::int64_t> comp_of(nr, -1);
        std::vector<Comp> comps;
        for (std::size_t i = 0; i < nr; ++i) {
            const std::uint32_t r = find_root(parent, static_cast<std::uint32_t>(i));
            const Run& run = runs[i];
            if (comp_of[r] < 0) {
                comp_of[r] = static_cast<std::int64_t>(comps.size());
                comps.push_back(Comp{run.row, run.row + 1, run.c0, run.c1, 0, 0.0});
            }
            Comp& cp = comps[static_cast<std::size_t>(comp_of[r])];
            cp.r0 = std::min<std::int64_t>(cp.r0, run.row);
            cp.r1 = std::max<std::int64_t>(cp.r1, run.row + 1);
            cp.c0 = std::min<std::int64_t>(cp.c0, run.c0);
            cp.c1 = std::max<std::int64_t>(cp.c1, run.c1);
            cp.area += run.c1 - run.c0;
            cp.contrast += run.contrast;
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
            for (std::size_t j = i + 1; j < ng; ++j) {
                const Comp& b = glyphs[j];
                // Sorted by c0: every later glyph is at least this far right.
                if (2 * (b.c0 - a.c1) >= 3 * max_h) break;
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
            const double gc = g.contrast / static_cast<double>(g.area);
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

}  // namespace

namespace detail {

void classify_interior_ref(const std::uint32_t* prefix, const std::uint8_t* row,
                           std::size_t c0, std::size_t c1, std::size_t r, std::int32_t cnt,
                           std::int32_t tc, std::uint8_t* bright, std::uint8_t* dark) {
    // cnt <= 129^2 fits int16, so the product is a 16x16->32 bit multiply, which SSE2
    // has (a 32-bit lane multiply needs SSE4.1): the compiler vectorises this loop.
    const auto cnt16 = static_cast<std::int16_t>(cnt);
    for (std::size_t c = c0; c < c1; ++c) {
        const auto sum = static_cast<std::int32_t>(prefix[c + r + 1] - prefix[c - r]);
        const std::int32_t v = static_cast<std::int32_t>(static_cast<std::int16_t>(row[c])) *
                               static_cast<std::int32_t>(cnt16);
        bright[c] = static_cast<std::uint8_t>(v > sum + tc);
        dark[c] = static_cast<std::uint8_t>(v + tc < sum);
    }
}

void find_text_boxes_with(ClassifyFn classify_interior, const std::uint8_t* data,
                          std::size_t frames, std::size_t rows, std::size_t cols,
                          const TextScreenParams& p, std::vector<TextBox>& out) {
    if (rows == 0 || cols == 0) return;
    const auto r = static_cast<std::size_t>(p.radius);
    // Window sums stay below 2^32, so modular uint32 prefix sums give them exactly.
    std::vector<std::uint32_t> colsum(cols), prefix(cols + 1);
    std::vector<std::int32_t> colcount(cols);
    for (std::size_t c = 0; c < cols; ++c) {
        const std::size_t lo = c >= r ? c - r : 0, hi = std::min(c + r, cols - 1);
        colcount[c] = static_cast<std::int32_t>(hi - lo + 1);
    }
    Pass bright, dark;
    bright.mask.resize(cols);
    dark.mask.resize(cols);
    const std::int32_t t = p.threshold;
    for (std::size_t f = 0; f < frames; ++f) {
        const std::uint8_t* img = data + f * rows * cols;
        bright.reset();
        dark.reset();
        std::fill(colsum.begin(), colsum.end(), 0u);
        for (std::size_t y = 0; y <= std::min(r, rows - 1); ++y)
            for (std::size_t c = 0; c < cols; ++c) colsum[c] += img[y * cols + c];
        for (std::size_t y = 0; y < rows; ++y) {
            if (y > 0) {
                const bool has_add = y + r < rows, has_sub = y > r;
                const std::uint8_t* add = img + (has_add ? y + r : 0) * cols;
                const std::uint8_t* sub = img + (has_sub ? y - r - 1 : 0) * cols;
                if (has_add && has_sub) {
                    for (std::size_t c = 0; c < cols; ++c)
                        colsum[c] = colsum[c] + add[c] - sub[c];
                } else if (has_add) {
                    for (std::size_t c = 0; c < cols; ++c) colsum[c] += add[c];
                } else if (has_sub) {
                    for (std::size_t c = 0; c < cols; ++c) colsum[c] -= sub[c];
                }
            }
            const std::size_t ylo = y >= r ? y - r : 0, yhi = std::min(y + r, rows - 1);
            const auto rowcount = static_cast<std::int32_t>(yhi - ylo + 1);
            prefix[0] = 0;
            for (std::size_t c = 0; c < cols; ++c) prefix[c + 1] = prefix[c] + colsum[c];
            const std::uint8_t* row = img + y * cols;
            const std::uint32_t* P = prefix.data();
            std::uint8_t* mb = bright.mask.data();
            std::uint8_t* md = dark.mask.data();
            // Border columns have clipped windows; interior ones share one window size.
            const std::size_t inner0 = std::min(r, cols);
            const std::size_t inner1 = cols > r ? std::max(cols - r, inner0) : inner0;
            auto classify = [&](std::size_t c) {
                const std::size_t lo = c >= r ? c - r : 0, hi = std::min(c + r, cols - 1);
                const auto sum = static_cast<std::int32_t>(P[hi + 1] - P[lo]);
                const std::int32_t cnt = rowcount * colcount[c];
                const std::int32_t v = static_cast<std::int32_t>(row[c]) * cnt;
                mb[c] = v > sum + t * cnt ? 1 : 0;
                md[c] = v + t * cnt < sum ? 1 : 0;
            };
            for (std::size_t c = 0; c < inner0; ++c) classify(c);
            for (std::size_t c = inner1; c < cols; ++c) classify(c);
            {
                const std::int32_t cnt = rowcount * static_cast<std::int32_t>(2 * r + 1);
                classify_interior(P, row, inner0, inner1, r, cnt, t * cnt, mb, md);
            }
            if (!p.bright) std::fill(bright.mask.begin(), bright.mask.end(), std::uint8_t{0});
            if (!p.dark) std::fill(dark.mask.begin(), dark.mask.end(), std::uint8_t{0});
            const auto yy = static_cast<std::int32_t>(y);
            bright.add_row(yy, cols, r, row, P, rowcount, colcount.data());
            dark.add_row(yy, cols, r, row, P, rowcount, colcount.data());
        }
        const auto fi = static_cast<std::int64_t>(f);
        if (p.bright) bright.finish(fi, p, out);
        if (p.dark) dark.finish(fi, p, out);
    }
}

}  // namespace detail
}  // namespace medveil

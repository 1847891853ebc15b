// The candidate-line checks of the text detector, in C++ for speed: the same decisions, and
// the same arithmetic (medians and linear quantiles as numpy computes them), as the Python
// reference in python/medveil/textdetect.py (not_text, noisy_surround, extend_line).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "medveil/textscreen.hpp"

namespace medveil {
namespace {

// Grey pixels of one frame: the samples themselves, or the luma of RGB.
struct Frame {
    const std::uint8_t* data;
    std::size_t cols, channels;
    int at(std::int64_t y, std::int64_t x) const {
        const std::uint8_t* p =
            data + (static_cast<std::size_t>(y) * cols + static_cast<std::size_t>(x)) * channels;
        if (channels == 1) return *p;
        return static_cast<int>((77u * p[0] + 150u * p[1] + 29u * p[2] + 128u) >> 8);
    }
};

// np.median of a non-empty array (the mean of the two middle values for an even count).
template <typename T>
double median(std::vector<T>& v) {
    const std::size_t n = v.size(), k = n / 2;
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    const auto hi = static_cast<double>(v[k]);
    if (n % 2) return hi;
    const auto lo = static_cast<double>(*std::max_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k)));
    return (lo + hi) / 2;
}

// Value counts of small non-negative integers: the medians and quantiles of pixels and
// their differences without sorting.
struct Hist {
    std::vector<std::uint32_t> count;
    std::uint64_t n = 0;
    explicit Hist(std::size_t bins) : count(bins, 0) {}
    void add(std::size_t v, std::uint32_t times = 1) {
        count[v] += times;
        n += times;
    }
    // The k-th smallest value (0-based), k < n.
    double kth(std::uint64_t k) const {
        std::uint64_t cum = 0;
        for (std::size_t v = 0; v < count.size(); ++v) {
            cum += count[v];
            if (cum > k) return static_cast<double>(v);
        }
        return static_cast<double>(count.size() - 1);
    }
    // np.median (n > 0).
    double median() const {
        const std::uint64_t k = n / 2;
        if (n % 2) return kth(k);
        return (kth(k - 1) + kth(k)) / 2;
    }
    // np.quantile(q), linear method, numpy's interpolation (n > 0).
    double quantile(double q) const {
        const double virt = static_cast<double>(n - 1) * q;
        if (virt >= static_cast<double>(n - 1)) return kth(n - 1);
        const auto lo = static_cast<std::uint64_t>(std::floor(virt));
        const double x = kth(lo), y = kth(lo + 1);
        const double gamma = virt - static_cast<double>(lo);
        const double d = y - x;
        return gamma >= 0.5 ? y - d * (1 - gamma) : x + d * gamma;
    }
};

// Median length of the runs of set cells along rows (by_rows) or columns of a h x w
// row-major mask; 0 when there are none.
double median_run(const std::vector<std::uint8_t>& ink, std::int64_t h, std::int64_t w,
                  bool by_rows, std::vector<std::int64_t>& lens) {
    lens.clear();
    const std::int64_t outer = by_rows ? h : w, inner = by_rows ? w : h;
    for (std::int64_t a = 0; a < outer; ++a) {
        std::int64_t run = 0;
        for (std::int64_t b = 0; b < inner; ++b) {
            const std::size_t i = static_cast<std::size_t>(by_rows ? a * w + b : b * w + a);
            if (ink[i]) {
                ++run;
            } else if (run) {
                lens.push_back(run);
                run = 0;
            }
        }
        if (run) lens.push_back(run);
    }
    return lens.empty() ? 0.0 : median(lens);
}

bool not_text(const Frame& fr, std::size_t rows, const std::int64_t* box, std::int64_t glyphs,
              const LineCheckParams& p) {
    const std::int64_t r0 = box[0], r1 = box[1], c0 = box[2], c1 = box[3];
    const std::int64_t h = r1 - r0, w = c1 - c0;
    if (static_cast<double>(w) < p.narrow * static_cast<double>(h)) return true;
    // The background level from the two rows above and below the box (inside, a dense
    // bold line may have more ink than background), or from the box if it has none.
    Hist ring(256), box_hist(256);
    for (std::int64_t y = std::max<std::int64_t>(0, r0 - 2); y < r0; ++y)
        for (std::int64_t x = c0; x < c1; ++x) ring.add(static_cast<std::size_t>(fr.at(y, x)));
    for (std::int64_t y = r1; y < std::min<std::int64_t>(static_cast<std::int64_t>(rows), r1 + 2); ++y)
        for (std::int64_t x = c0; x < c1; ++x) ring.add(static_cast<std::size_t>(fr.at(y, x)));
    std::vector<int> crop;
    crop.reserve(static_cast<std::size_t>(h * w));
    for (std::int64_t y = r0; y < r1; ++y)
        for (std::int64_t x = c0; x < c1; ++x) crop.push_back(fr.at(y, x));
    if (ring.n == 0)
        for (int v : crop) box_hist.add(static_cast<std::size_t>(v));
    const int bg = static_cast<int>(ring.n ? ring.median() : box_hist.median());
    int top = 0;
    for (int v : crop) top = std::max(top, std::abs(v - bg));
    if (top < 20) return false;
    std::vector<std::uint8_t> ink(crop.size());
    std::int64_t inked = 0;
    for (std::size_t i = 0; i < crop.size(); ++i) {
        ink[i] = std::abs(crop[i] - bg) > top / 2;
        inked += ink[i];
    }
    if (glyphs <= 2) {
        // Two glyphs need two columns of ink with a gap between them.
        std::int64_t prev = -1, gaps = 0;
        bool any = false;
        for (std::int64_t x = 0; x < w; ++x) {
            bool col = false;
            for (std::int64_t y = 0; y < h && !col; ++y) col = ink[static_cast<std::size_t>(y * w + x)] != 0;
            if (!col) continue;
            if (any && x - prev > 1) ++gaps;
            any = true;
            prev = x;
        }
        if (!any || gaps == 0) return true;
    }
    if (h < 12) return false;
    const double mean = static_cast<double>(inked) / static_cast<double>(ink.size());
    if ((glyphs <= 2 || h >= 40) && mean < p.sparse_ink) return true;
    std::vector<std::int64_t> lens;
    const double width = std::min(median_run(ink, h, w, true, lens), median_run(ink, h, w, false, lens));
    return width >= 6 && width > p.blob_stroke * static_cast<double>(h);
}

bool noisy_surround(const Frame& fr, std::size_t rows, const std::int64_t* box,
                    std::int32_t threshold, std::int64_t glyphs, const LineCheckParams& p) {
    if (glyphs >= p.min_glyphs_in_noise) return false;
    const std::int64_t r0 = box[0], r1 = box[1], c0 = box[2], c1 = box[3];
    const std::int64_t h = r1 - r0;
    Hist d(256);
    auto band = [&](std::int64_t y0, std::int64_t y1) {
        for (std::int64_t y = y0; y < y1; ++y) {
            int prev = c0 < c1 ? fr.at(y, c0) : 0;
            for (std::int64_t x = c0 + 1; x < c1; ++x) {
                const int v = fr.at(y, x);
                d.add(static_cast<std::size_t>(std::abs(v - prev)));
                prev = v;
            }
        }
    };
    band(std::max<std::int64_t>(0, r0 - h), r0);
    band(r1, std::min<std::int64_t>(static_cast<std::int64_t>(rows), r1 + h));
    if (d.n < 16) return false;
    // The upper quartile, not the median: a band half on the black border of an image and
    // half in its speckle must count as noisy.
    const double sigma = d.quantile(0.75) / 0.9539;
    if (static_cast<double>(threshold) >= p.noise_factor * sigma) return false;
    Hist crop(256);
    for (std::int64_t y = r0; y < r1; ++y)
        for (std::int64_t x = c0; x < c1; ++x) crop.add(static_cast<std::size_t>(fr.at(y, x)));
    // |v - median| in half steps (the median of an even count may end in .5).
    const auto med2 = static_cast<int>(2 * crop.median());
    Hist dev2(512);
    for (std::size_t v = 0; v < 256; ++v)
        if (crop.count[v]) dev2.add(static_cast<std::size_t>(std::abs(2 * static_cast<int>(v) - med2)), crop.count[v]);
    return dev2.quantile(0.95) / 2 < p.strong_factor * sigma;
}

void extend_line(const Frame& fr, std::size_t cols, std::int64_t* box, std::int32_t threshold,
                 const LineCheckParams& p) {
    const std::int64_t r0 = box[0], r1 = box[1], c0 = box[2], c1 = box[3];
    const std::int64_t h = r1 - r0;
    const std::int64_t reach = std::min(p.extend_lines * h, p.extend_max);
    const std::int64_t lo = std::max<std::int64_t>(0, c0 - reach);
    const std::int64_t hi = std::min(static_cast<std::int64_t>(cols), c1 + reach);
    std::vector<int> band;
    band.reserve(static_cast<std::size_t>(h * (hi - lo)));
    Hist hist(256);
    for (std::int64_t y = r0; y < r1; ++y)
        for (std::int64_t x = lo; x < hi; ++x) {
            band.push_back(fr.at(y, x));
            hist.add(static_cast<std::size_t>(band.back()));
        }
    const int med = static_cast<int>(hist.median());
    const std::int64_t wb = hi - lo;
    std::vector<std::uint8_t> ink(static_cast<std::size_t>(wb), 0);
    for (std::int64_t y = 0; y < h; ++y)
        for (std::int64_t x = 0; x < wb; ++x)
            if (std::abs(band[static_cast<std::size_t>(y * wb + x)] - med) > threshold) ink[static_cast<std::size_t>(x)] = 1;
    const std::int64_t gap = std::min(p.gap_lines * h, p.extend_max / 2);
    std::int64_t right = c1 - lo;
    for (std::int64_t x = right; x < wb && x - right <= gap; ++x)
        if (ink[static_cast<std::size_t>(x)]) right = x + 1;
    std::int64_t left = c0 - lo;
    for (std::int64_t x = left - 1; x >= 0 && left - 1 - x <= gap; --x)
        if (ink[static_cast<std::size_t>(x)]) left = x;
    box[2] = lo + left;
    box[3] = lo + right;
}

}  // namespace

bool check_line(const std::uint8_t* data, std::size_t rows, std::size_t cols,
                std::size_t channels, std::size_t frame, std::int64_t box[4],
                std::int64_t glyphs, std::int32_t threshold, const LineCheckParams& p) {
    const Frame fr{data + frame * rows * cols * channels, cols, channels};
    // Blobs, frame edges and speckle clumps line up only a few "glyphs"; a long line is
    // text (or, at worst, over-masked).
    if (glyphs <= p.check_glyphs &&
        (not_text(fr, rows, box, glyphs, p) || noisy_surround(fr, rows, box, threshold, glyphs, p)))
        return false;
    extend_line(fr, cols, box, threshold, p);
    return true;
}

}  // namespace medveil

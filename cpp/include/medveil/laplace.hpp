// Exact noise samplers on the ChaCha20 CSPRNG: unbiased uniform integers, Bernoulli
// draws with probability exp(-gamma), the discrete Laplace distribution and a float-safe
// Laplace mechanism on a power-of-two grid.
//
// "Exact" means the output distribution is the mathematical one, not a floating-point
// approximation: every decision compares random bits with rational numbers in integer
// arithmetic (64-bit values, 128-bit products), drawing further bits only when the bits
// seen so far cannot decide. No logarithm, no division of doubles, no rounding of
// probabilities. This is what closes the holes Mironov (CCS 2012) found in textbook
// floating-point Laplace noise.
//
// All functions trust their pointers and lengths (the bindings check them) but validate
// their numeric parameters and throw std::invalid_argument on bad ones.
#pragma once

#include <cstddef>
#include <cstdint>

#include "medveil/csprng.hpp"

namespace medveil::noise {

// A positive rational num / den. Both terms are at most kMaxTerm.
struct Rational {
    std::uint64_t num;
    std::uint64_t den;
};
constexpr std::uint64_t kMaxTerm = std::uint64_t(1) << 62;
// Largest discrete Laplace scale accepted: |noise| >= 2^63 then has probability < e^-2048,
// so int64 outputs never saturate in practice (and if they would, the sampler throws).
constexpr double kMaxScale = 4503599627370496.0;  // 2^52

// The exact value of a positive finite double as num / den (den a power of two). When
// the exact value needs a term above kMaxTerm (scales below 2^-9 with a full mantissa)
// it is rounded UP to den = 2^62: a larger scale is more noise, never less privacy.
// Throws std::invalid_argument for scale <= 0, NaN, infinity or scale > kMaxScale.
Rational rational_scale(double scale);

// out[i] uniform on [0, n), without modulo bias (Lemire 2019, "Fast random integer
// generation in an interval"); n == 0 means the full range [0, 2^64).
void uniform_below(Csprng& rng, std::uint64_t n, std::uint64_t* out, std::size_t count);

// out[i] = 1 with probability exp(-gamma), gamma = num / den >= 0, den in [1, kMaxTerm]
// (Canonne, Kamath, Steinke 2020, Algorithm 1, with each Bernoulli(gamma / k) decided by
// comparing random bits with the rational gamma / k).
void bernoulli_exp(Csprng& rng, std::uint64_t num, std::uint64_t den, std::uint8_t* out,
                   std::size_t count);

// out[i] with P(out = z) proportional to exp(-|z| / scale) on the integers.
//
// The default sampler is CKS Algorithm 2 with its uniform U on {0..t-1} replaced by its
// continuous limit: Y = floor(scale * E) for an exponential E, drawn exactly with von
// Neumann's comparison method (a uniform F, accepted with probability exp(-F) by counting
// a descending run of further uniforms; the number of rejections is the integer part).
// Each uniform is a lazily extended string of 16-bit chunks, so a comparison almost
// always costs 16 random bits and ties are resolved by drawing more, never by rounding.
// The floor is an exact 128-bit computation on F's bits (as many as the scale needs).
// About 9 bytes of keystream per sample at scale 10 and 15 at the grid scale 2^40,
// against ~40 for CKS as written, with the same exact output distribution.
void discrete_laplace(Csprng& rng, Rational scale, std::int64_t* out, std::size_t count);

// The literal CKS 2020 Algorithm 2 (scale = num / den; uniform U on {0..num-1} accepted
// with Bernoulli(exp(-U/num)), V by repeated Bernoulli(exp(-1)), Y = (U + num V) / den).
// Slower; kept as the reference the fast sampler is tested and benchmarked against.
void discrete_laplace_cks(Csprng& rng, Rational scale, std::int64_t* out, std::size_t count);

// The k of the grid 2^k used for a Laplace scale: the smallest power of two at least
// scale / 2^40, as Google's differential-privacy library chooses it.
int grid_exponent(double scale);

// Float-safe Laplace mechanism on the grid g = 2^k:
//   out[i] = g * (round(x[i] / g) + discrete_laplace(scale / g))
// with x == nullptr meaning zeros (pure noise). Every output is an exact multiple of g.
// round(x / g) is clamped to +-2^1000 grid steps (monotone, so no extra sensitivity); the
// integer sum is computed exactly and rounded once to a double, which only happens beyond
// 2^53 grid steps and is a function of the private sum alone (post-processing). Rounding
// to the grid moves a value by up to g/2, so neighbours' rounded values differ by up to
// sensitivity + g: the caller must pass scale >= (sensitivity + g) / epsilon (medveil.dp
// does). scale / g must be at most kMaxGridScale (Google's choice of g gives about 2^40).
// Throws on a NaN or infinite input before drawing any noise.
constexpr double kMaxGridScale = 17592186044416.0;  // 2^44
void laplace_on_grid(Csprng& rng, const double* x, std::size_t count, double scale, int k,
                     double* out);

}  // namespace medveil::noise

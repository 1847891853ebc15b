// Exact samplers (see laplace.hpp). Portable code: the speed comes from the batched,
// dispatched ChaCha20 keystream behind Csprng and from drawing 32-bit words, not 64.
#include "medveil/laplace.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "medveil/chacha20.hpp"

namespace medveil::noise {
namespace {

using u128 = unsigned __int128;

// Uniform reals are drawn 16 bits at a time: a comparison of two uniforms is decided by
// the first chunk with probability 1 - 2^-16, so wider chunks would mostly waste keystream
// (which is where the time goes). 64 chunks = 1024 bits; needing more means 63 ties in a
// row (probability 2^-1008), and the sampler then throws rather than decide inexactly.
using Chunk = std::uint16_t;
constexpr unsigned kChunkBits = 16;
constexpr unsigned kMaxChunks = 64;

[[noreturn]] void too_many_chunks() {
    throw std::runtime_error("noise sampler: a comparison needed more than 1024 random bits "
                             "(probability 2^-992); refusing to decide it inexactly");
}

// A uniform real in [0, 1) known by a prefix of 32-bit chunks, most significant first;
// further chunks are drawn on demand and kept, since the value is compared again later.
struct Lazy {
    Chunk c[kMaxChunks] = {};
    unsigned n = 0;
    Chunk chunk(Csprng& rng, unsigned i) {
        while (n <= i) {
            if (n == kMaxChunks) too_many_chunks();
            c[n++] = rng.next_u16();
        }
        return c[i];
    }
};

// Given a fresh uniform whose first chunk v0 equals cur's first chunk, draws its further
// chunks into `out` and returns whether it is below cur (extending cur as needed).
bool fresh_below_tied(Csprng& rng, Chunk v0, Lazy& cur, Lazy& out) {
    out.c[0] = v0;
    out.n = 1;
    for (unsigned i = 1;; ++i) {
        const Chunk a = out.chunk(rng, i);
        const Chunk b = cur.chunk(rng, i);
        if (a != b) return a < b;
    }
}

// Whether a uniform real R in [0, 1) is >= m / t (0 < m < t <= 2^94), where R's chunks
// are F.c[idx..] followed by fresh chunks. Each step decides unless m/t falls inside the
// 2^-16-wide interval the chunk picked, so it costs one chunk with probability 1 - 2^-16.
bool rest_at_least(Csprng& rng, const Lazy* f, unsigned idx, u128 m, u128 t) {
    for (;;) {
        const Chunk c = (f != nullptr && idx < f->n) ? f->c[idx] : rng.next_u16();
        ++idx;
        const u128 big_m = m << kChunkBits;
        const u128 ct = static_cast<u128>(c) * t;
        if (ct >= big_m) return true;       // R >= c / 2^16 >= m / t
        if (ct + t <= big_m) return false;  // R < (c + 1) / 2^16 <= m / t
        m = big_m - ct;                     // R's remaining bits decide; 0 < m < t again
    }
}

// Bernoulli(num / den) for 0 <= num, den <= 2^94, from fresh chunks.
bool bernoulli_rational(Csprng& rng, u128 num, u128 den) {
    if (num >= den) return true;
    if (num == 0) return false;
    return !rest_at_least(rng, nullptr, 0, num, den);
}

// Bernoulli(exp(-num/den)) for num/den in [0, 1]: CKS 2020 Algorithm 1.
bool bernoulli_exp_unit(Csprng& rng, u128 num, u128 den) {
    std::uint64_t k = 1;
    for (;;) {
        if (k == (std::uint64_t(1) << 32)) too_many_chunks();  // probability 1/(2^32)!
        if (!bernoulli_rational(rng, num, den * k)) break;
        ++k;
    }
    return (k & 1) != 0;
}

// Bernoulli(exp(-num/den)) for any num/den >= 0: CKS 2020 Algorithm 1, gamma > 1 branch.
bool bernoulli_exp_any(Csprng& rng, std::uint64_t num, std::uint64_t den) {
    const std::uint64_t whole = num / den;
    for (std::uint64_t i = 0; i < whole; ++i)
        if (!bernoulli_exp_unit(rng, 1, 1)) return false;
    return bernoulli_exp_unit(rng, num % den, den);
}

std::uint64_t uniform_one(Csprng& rng, std::uint64_t n) {
    if (n == 0) return rng.next_u64();
    u128 m = static_cast<u128>(rng.next_u64()) * n;
    auto low = static_cast<std::uint64_t>(m);
    if (low < n) {
        // Reject the (2^64 mod n) low products that would over-represent some values.
        const std::uint64_t threshold = (0 - n) % n;
        while (low < threshold) {
            m = static_cast<u128>(rng.next_u64()) * n;
            low = static_cast<std::uint64_t>(m);
        }
    }
    return static_cast<std::uint64_t>(m >> 64);
}

void check_rational(Rational r, const char* what) {
    if (r.num == 0 || r.den == 0 || r.num > kMaxTerm || r.den > kMaxTerm)
        throw std::invalid_argument(std::string(what) + ": numerator and denominator must be in "
                                                        "[1, 2^62]");
    if (static_cast<u128>(r.num) > static_cast<u128>(r.den) * (std::uint64_t(1) << 52))
        throw std::invalid_argument(std::string(what) + ": scale above 2^52 is not supported");
}

// The scale t/s with the division by s prepared (a shift when s is a power of two), and
// how many chunks of F to draw up front: the fewest whose 2^-bits resolution, times the
// scale, is below 1, so the floor is decided or has a single integer in doubt.
struct Params {
    std::uint64_t t, s;
    int shift;        // log2(s) when s is a power of two, else -1
    unsigned chunks;  // 1..4 (scale <= 2^52 < 2^64)
    explicit Params(Rational r) : t(r.num), s(r.den), shift(-1), chunks(4) {
        if ((s & (s - 1)) == 0) shift = __builtin_ctzll(s);
        for (unsigned n = 1; n <= 4; ++n) {
            if (static_cast<u128>(t) < (static_cast<u128>(s) << (kChunkBits * n))) {
                chunks = n;
                break;
            }
        }
    }
    std::uint64_t div(std::uint64_t x) const { return shift >= 0 ? x >> shift : x / s; }
};

// floor((t/s) * (J + F)) exactly, F the accepted uniform (its first p.chunks chunks drawn).
// C = p.chunks as a template argument, so shifts and loops are constants.
template <unsigned C>
std::int64_t scaled_floor(Csprng& rng, const Lazy& f, const Params& p, std::uint64_t j) {
    u128 q1 = 0;
    std::uint64_t r1 = 0;
    if (j != 0) {
        const u128 a = static_cast<u128>(p.t) * j;
        if (p.shift >= 0) {
            q1 = a >> p.shift;
            r1 = static_cast<std::uint64_t>(a) & (p.s - 1);
        } else {
            q1 = a / p.s;
            r1 = static_cast<std::uint64_t>(a % p.s);
        }
    }
    constexpr unsigned bits = kChunkBits * C;  // B <= 64
    std::uint64_t w = 0;
    for (unsigned i = 0; i < C; ++i) w = (w << kChunkBits) | f.c[i];
    // F lies in [w, w + 1) / 2^B, so (r1 + t F) / s lies in [lo, lo + t) / (s 2^B); t < s 2^B
    // by the choice of p.chunks, so at most one integer boundary falls inside. lo >> B is
    // r1 + floor(t w / 2^B) < s + t <= 2^63.
    const u128 lo = (static_cast<u128>(r1) << bits) + static_cast<u128>(p.t) * w;
    const std::uint64_t y_lo = p.div(static_cast<std::uint64_t>(lo >> bits));
    const std::uint64_t y_hi = p.div(static_cast<std::uint64_t>((lo + (p.t - 1)) >> bits));
    u128 y = q1 + y_lo;
    if (y_lo != y_hi) {
        // The boundary k = y_lo + 1 is inside: the floor is k iff the bits of F beyond the
        // first B, read as R in [0, 1), satisfy t R >= k s 2^B - lo (0 < that < t).
        const u128 m = (static_cast<u128>((y_lo + 1) * p.s) << bits) - lo;
        if (rest_at_least(rng, &f, C, m, p.t)) y += 1;
    }
    if (y > static_cast<u128>(std::numeric_limits<std::int64_t>::max()))
        throw std::overflow_error("discrete_laplace: noise beyond the int64 range");
    return static_cast<std::int64_t>(y);
}

// One discrete Laplace sample; `bits`/`nbits` is a reservoir of sign bits.
template <unsigned C>
inline std::int64_t sample_one(Csprng& rng, const Params& p, Lazy& f, Lazy& s, Lazy& tmp,
                               std::uint32_t& bits, unsigned& nbits) {
    for (;;) {
        std::uint64_t j = 0;
        // Von Neumann: F uniform, then a descending run F > U2 > U3 > ...; F is accepted
        // (with probability exp(-F)) iff the run has an even number of steps.
        for (;;) {
            {
                const std::uint64_t w = rng.peek_u64();  // F's C chunks in keystream order
                for (unsigned i = 0; i < C; ++i) f.c[i] = static_cast<Chunk>(w >> (kChunkBits * i));
                rng.skip(2 * C);
                f.n = C;
            }
            // Fast path: the next four chunks decide the run without a data-dependent
            // branch per comparison, unless a used chunk ties or all four descend; only the
            // chunks the decision looked at are consumed.
            {
                const std::uint64_t w = rng.peek_u64();
                const auto u1 = static_cast<Chunk>(w), u2 = static_cast<Chunk>(w >> 16);
                const auto u3 = static_cast<Chunk>(w >> 32), u4 = static_cast<Chunk>(w >> 48);
                const unsigned d1 = u1 < f.c[0], d2 = u2 < u1, d3 = u3 < u2, d4 = u4 < u3;
                const unsigned r3 = d1 & d2, r4 = r3 & d3;
                const unsigned tie = static_cast<unsigned>(u1 == f.c[0]) |
                                     (d1 & static_cast<unsigned>(u2 == u1)) |
                                     (r3 & static_cast<unsigned>(u3 == u2)) |
                                     (r4 & static_cast<unsigned>(u4 == u3));
                if (__builtin_expect((tie | (r4 & d4)) == 0, 1)) {
                    const unsigned steps = d1 + r3 + r4;
                    rng.skip(2 * (steps + 1));
                    if ((steps & 1) == 0) break;
                    if (++j == kMaxTerm) throw std::overflow_error("discrete_laplace: runaway sample");
                    continue;
                }
            }
            // General path (same chunks, same order): ties and long runs.
            Chunk cur0 = f.c[0];
            int mode = 0;  // current minimum: 0 = F, 1 = one chunk cur0 only, 2 = in s
            unsigned steps = 0;
            for (;;) {
                const Chunk u = rng.next_u16();
                if (u < cur0) {
                    cur0 = u;
                    mode = 1;
                    ++steps;
                    continue;
                }
                if (u > cur0) break;
                if (mode == 1) {
                    s.c[0] = cur0;
                    s.n = 1;
                    mode = 2;
                }
                if (!fresh_below_tied(rng, u, mode == 0 ? f : s, tmp)) break;
                s = tmp;
                mode = 2;
                ++steps;
            }
            if ((steps & 1) == 0) break;
            if (++j == kMaxTerm) throw std::overflow_error("discrete_laplace: runaway sample");
        }
        const std::int64_t y = scaled_floor<C>(rng, f, p, j);
        if (nbits == 0) {
            bits = rng.next_u32();
            nbits = 32;
        }
        const bool negative = (bits & 1) != 0;
        bits >>= 1;
        --nbits;
        // CKS: a negative zero is rejected, or zero would be twice as likely as it should.
        if (negative && y == 0) continue;
        return negative ? -y : y;
    }
}

// Per-batch sampler state, wiped on every exit path: the random bits behind the last
// samples would let a later memory reader subtract the noise.
struct State {
    Lazy f, s, tmp;
    std::uint32_t bits = 0;
    unsigned nbits = 0;
    State() = default;
    State(const State&) = delete;
    State& operator=(const State&) = delete;
    ~State() {
        secure_wipe(&f, sizeof f);
        secure_wipe(&s, sizeof s);
        secure_wipe(&tmp, sizeof tmp);
        secure_wipe(&bits, sizeof bits);
    }
    template <unsigned C>
    std::int64_t sample(Csprng& rng, const Params& p) {
        return sample_one<C>(rng, p, f, s, tmp, bits, nbits);
    }
};

// Calls body(std::integral_constant<unsigned, C>) for C = chunks (1..4).
template <typename Body>
void with_chunks(unsigned chunks, Body&& body) {
    switch (chunks) {
        case 1: body(std::integral_constant<unsigned, 1>{}); break;
        case 2: body(std::integral_constant<unsigned, 2>{}); break;
        case 3: body(std::integral_constant<unsigned, 3>{}); break;
        default: body(std::integral_constant<unsigned, 4>{}); break;
    }
}

// Nearest integer, ties to even (the default rounding mode): adding and subtracting 2^52
// with v's sign leaves no fraction bits; beyond 2^52 every double is an integer already.
inline double round_to_integer(double v) noexcept {
    if (!(std::fabs(v) < 0x1p52)) return v;
    const double m = std::copysign(0x1p52, v);
    return (v + m) - m;
}

}  // namespace

Rational rational_scale(double scale) {
    if (!(scale > 0.0) || !std::isfinite(scale))
        throw std::invalid_argument("scale must be a positive finite number");
    if (scale > kMaxScale)
        throw std::invalid_argument("scale above 2^52 is not supported");
    int e = 0;
    const double m = std::frexp(scale, &e);                         // scale = m 2^e, m in [0.5, 1)
    auto mant = static_cast<std::uint64_t>(std::ldexp(m, 53));     // exact: 53-bit integer
    int exp2 = e - 53;                                              // scale = mant 2^exp2
    while ((mant & 1) == 0 && exp2 < 0) {
        mant >>= 1;
        ++exp2;
    }
    if (exp2 >= 0) return Rational{mant << exp2, 1};  // scale <= 2^52 keeps this below 2^62
    if (-exp2 <= 62) return Rational{mant, std::uint64_t(1) << -exp2};
    // Too fine for 62-bit terms: round up to a multiple of 2^-62 (never less noise).
    const int drop = -exp2 - 62;
    std::uint64_t num = drop >= 64 ? 0 : (mant >> drop);
    const bool inexact = drop >= 64 || (num << drop) != mant;
    if (inexact) ++num;
    return Rational{num, kMaxTerm};
}

void uniform_below(Csprng& rng, std::uint64_t n, std::uint64_t* out, std::size_t count) {
    for (std::size_t i = 0; i < count; ++i) out[i] = uniform_one(rng, n);
}

void bernoulli_exp(Csprng& rng, std::uint64_t num, std::uint64_t den, std::uint8_t* out,
                   std::size_t count) {
    if (den == 0 || den > kMaxTerm)
        throw std::invalid_argument("bernoulli_exp: denominator must be in [1, 2^62]");
    for (std::size_t i = 0; i < count; ++i) out[i] = bernoulli_exp_any(rng, num, den) ? 1 : 0;
}

void discrete_laplace(Csprng& rng, Rational scale, std::int64_t* out, std::size_t count) {
    check_rational(scale, "discrete_laplace");
    const Params p(scale);
    State st;
    with_chunks(p.chunks, [&](auto c) {
        for (std::size_t i = 0; i < count; ++i) out[i] = st.sample<decltype(c)::value>(rng, p);
    });
}

void discrete_laplace_cks(Csprng& rng, Rational scale, std::int64_t* out, std::size_t count) {
    check_rational(scale, "discrete_laplace_cks");
    const std::uint64_t t = scale.num, s = scale.den;
    for (std::size_t i = 0; i < count;) {
        const std::uint64_t u = uniform_one(rng, t);
        if (!bernoulli_exp_unit(rng, u, t)) continue;
        std::uint64_t v = 0;
        while (bernoulli_exp_unit(rng, 1, 1)) ++v;
        const u128 x = static_cast<u128>(u) + static_cast<u128>(t) * v;
        const u128 y = x / s;
        const bool negative = (rng.next_u32() & 1) != 0;
        if (negative && y == 0) continue;
        if (y > static_cast<u128>(std::numeric_limits<std::int64_t>::max()))
            throw std::overflow_error("discrete_laplace_cks: noise beyond the int64 range");
        const auto yi = static_cast<std::int64_t>(y);
        out[i++] = negative ? -yi : yi;
    }
}

int grid_exponent(double scale) {
    if (!(scale > 0.0) || !std::isfinite(scale))
        throw std::invalid_argument("scale must be a positive finite number");
    int e = 0;
    const double m = std::frexp(scale, &e);  // scale = m 2^e, m in [0.5, 1)
    const int ceil_log2 = (m == 0.5) ? e - 1 : e;
    return ceil_log2 - 40;
}

void laplace_on_grid(Csprng& rng, const double* x, std::size_t count, double scale, int k,
                     double* out) {
    if (k < -1000 || k > 1000)
        throw std::invalid_argument("laplace_on_grid: grid exponent out of range");
    if (x != nullptr)
        for (std::size_t i = 0; i < count; ++i)
            if (!std::isfinite(x[i]))
                throw std::invalid_argument("laplace_on_grid: values must be finite (clamp them)");
    const double lambda = std::ldexp(scale, -k);
    if (!(lambda <= kMaxGridScale))
        throw std::invalid_argument("laplace_on_grid: scale / 2^k above 2^44; use a coarser grid");
    const Params p(rational_scale(lambda));
    check_rational(Rational{p.t, p.s}, "laplace_on_grid");
    constexpr double kClamp = 0x1p1000;   // grid steps; far beyond any real value
    constexpr double kExactInt = 0x1p53;  // integers below this are exact doubles
    // |k| <= 1000, so 2^k and 2^-k are normal doubles and multiplying by them is the same
    // single correctly rounded (here: exact, short of over/underflow) operation as ldexp.
    const double g = std::ldexp(1.0, k), inv_g = std::ldexp(1.0, -k);
    State st;
    with_chunks(p.chunks, [&](auto c) {
        for (std::size_t i = 0; i < count; ++i) {
            double q = 0.0;
            if (x != nullptr) {
                // x / 2^k is exact (barring underflow, which rounds to 0 anyway); clamping
                // is monotone and 1-Lipschitz, so it adds no sensitivity.
                q = round_to_integer(x[i] * inv_g);
                q = q < -kClamp ? -kClamp : (q > kClamp ? kClamp : q);
            }
            const std::int64_t y = st.sample<decltype(c)::value>(rng, p);
            if (y <= -static_cast<std::int64_t>(kExactInt) ||
                y >= static_cast<std::int64_t>(kExactInt))
                throw std::overflow_error("laplace_on_grid: noise beyond 2^53 grid steps");
            // q and y are exact doubles, so q + y is the exact integer sum rounded once to
            // a double: a function of the private output alone (post-processing), exact
            // whenever it is below 2^53. Scaling by 2^k is exact short of overflow.
            out[i] = (q + static_cast<double>(y)) * g;
        }
    });
}

}  // namespace medveil::noise

"""Statistical tests of the exact samplers against their exact distributions.

Every test uses a fixed seed and a significance level ALPHA = 1e-3, so with a correct
sampler each test would fail for about one seed in a thousand; the seeds are fixed, so the
suite is deterministic, and a failure here is a real defect, not bad luck to re-run.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from medveil import _core
from medveil.privacy import dp
from scipy import stats

N = _core.noise
ALPHA = 1e-3


def chi_square_p(observed: np.ndarray, expected_probs: np.ndarray) -> float:
    """p-value of a chi-square goodness-of-fit test; bins with expected count < 5 are merged
    into their neighbour so the chi-square approximation holds."""
    total = observed.sum()
    exp = expected_probs * total
    obs_m, exp_m = [], []
    o_acc = e_acc = 0.0
    for o, e in zip(observed, exp, strict=True):
        o_acc += o
        e_acc += e
        if e_acc >= 5:
            obs_m.append(o_acc)
            exp_m.append(e_acc)
            o_acc = e_acc = 0.0
    if e_acc > 0:
        obs_m[-1] += o_acc
        exp_m[-1] += e_acc
    obs_a, exp_a = np.array(obs_m), np.array(exp_m)
    exp_a *= obs_a.sum() / exp_a.sum()
    return float(stats.chisquare(obs_a, exp_a).pvalue)


def dlap_pmf(z: np.ndarray, scale: float) -> np.ndarray:
    """Exact P(Z = z) for the discrete Laplace of this scale."""
    q = math.exp(-1.0 / scale)
    return (1 - q) / (1 + q) * np.exp(-np.abs(z) / scale)


def dlap_tail(w: int, scale: float) -> float:
    """Exact P(|Z| > w)."""
    q = math.exp(-1.0 / scale)
    return 2 * q ** (w + 1) / (1 + q)


# --- uniform integers ------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 10, 1000])
def test_uniform_small_ranges_chi_square(backend: str, n: int) -> None:
    x = N.uniform_below(dp.insecure_rng(n), n, 200_000)
    assert x.dtype == np.uint64 and x.max() < n
    if n > 1:
        counts = np.bincount(x.astype(np.int64), minlength=n)
        assert chi_square_p(counts, np.full(n, 1.0 / n)) > ALPHA


def test_uniform_without_modulo_bias(backend: str) -> None:
    """n = 3 * 2^62: a plain `x % n` would put half the mass in [0, 2^62) instead of a third."""
    n = 3 * 2**62
    x = N.uniform_below(dp.insecure_rng(7), n, 90_000)
    thirds = np.bincount((x >> np.uint64(62)).astype(np.int64), minlength=3)
    assert thirds.size == 3
    assert chi_square_p(thirds, np.full(3, 1 / 3)) > ALPHA
    naive = np.frombuffer(dp.insecure_rng(7).bytes(8 * 90_000), dtype="<u8") % np.uint64(n)
    naive_thirds = np.bincount((naive >> np.uint64(62)).astype(np.int64), minlength=3)
    assert chi_square_p(naive_thirds, np.full(3, 1 / 3)) < 1e-100  # the test has teeth


def test_uniform_full_range_and_limits() -> None:
    x = N.uniform_below(dp.insecure_rng(3), 2**64, 1000)
    assert x.dtype == np.uint64 and int(x.max()) > 2**63  # the full range is used
    for bad in (0, -1, 2**64 + 1):
        with pytest.raises(ValueError):
            N.uniform_below(dp.insecure_rng(3), bad, 1)


# --- Bernoulli(exp(-gamma)) -------------------------------------------------------------


@pytest.mark.parametrize(
    "num,den", [(0, 1), (1, 3), (1, 1), (5, 2), (7, 1), (2**62 - 1, 2**62), (10**18, 3 * 10**17)]
)
def test_bernoulli_exp_binomial(backend: str, num: int, den: int) -> None:
    n = 200_000
    x = N.bernoulli_exp(dp.insecure_rng(num % 1000 + den % 1000), num, den, n)
    assert x.dtype == np.bool_
    p = math.exp(-num / den)
    if p == 1.0:
        assert x.all()
        return
    assert stats.binomtest(int(x.sum()), n, p).pvalue > ALPHA


# --- discrete Laplace -------------------------------------------------------------------

SCALES = [0.25, 0.5, 1.0, 3.0, 10.0, 100.5, Fraction(7, 3), Fraction(1000, 7)]


@pytest.mark.parametrize("sampler", ["discrete_laplace", "discrete_laplace_cks"])
@pytest.mark.parametrize("scale", SCALES, ids=str)
def test_discrete_laplace_chi_square(backend: str, sampler: str, scale: float | Fraction) -> None:
    num, den = dp._rational(scale)
    n = 200_000
    x = getattr(N, sampler)(dp.insecure_rng(num * 31 + den), num, den, n)
    assert x.dtype == np.int64
    s = float(scale)
    w = math.ceil(s * 12) + 2  # P(|Z| > w) < 1e-5: one tail bin each side
    z = np.arange(-w, w + 1)
    probs = dlap_pmf(z, s)
    tail = dlap_tail(w, s) / 2
    observed = np.concatenate(
        [
            [np.sum(x < -w)],
            np.bincount(np.clip(x, -w - 1, w + 1) + w + 1, minlength=2 * w + 3)[1:-1],
            [np.sum(x > w)],
        ]
    )
    expected = np.concatenate([[tail], probs, [tail]])
    assert observed.sum() == n
    assert chi_square_p(observed, expected) > ALPHA


@pytest.mark.parametrize("scale", [2.0**20, 2.0**40, 2.0**52, 1e9 / 3])
def test_discrete_laplace_large_scales(backend: str, scale: float) -> None:
    """Large scales: bin |Z| / scale into quantiles of the exact geometric distribution."""
    num, den = dp._rational(scale)
    n = 100_000
    x = N.discrete_laplace(dp.insecure_rng(int(scale) % 997), num, den, n)
    q = math.exp(-1.0 / scale)
    edges = [0, *[math.ceil(scale * t) for t in (0.25, 0.5, 1, 2, 3, 5)]]
    a = np.abs(x)

    # P(|Z| >= k) = 2 q^k / (1 + q) for k >= 1; P(|Z| >= 0) = 1.
    def ge(k: int) -> float:
        return 1.0 if k == 0 else 2 * q**k / (1 + q)

    probs = [ge(lo) - ge(hi) for lo, hi in itertools.pairwise(edges)] + [ge(edges[-1])]
    observed = [np.sum((a >= lo) & (a < hi)) for lo, hi in itertools.pairwise(edges)]
    observed.append(np.sum(a >= edges[-1]))
    assert chi_square_p(np.array(observed), np.array(probs)) > ALPHA
    # Symmetry: as many positive as negative outputs.
    assert stats.binomtest(int(np.sum(x > 0)), int(np.sum(x != 0)), 0.5).pvalue > ALPHA


def test_discrete_laplace_tiny_scale_rounds_up() -> None:
    num, den = N.rational_scale(1e-30)
    assert num / den >= 1e-30 and den == 2**62
    x = N.discrete_laplace(dp.insecure_rng(1), num, den, 1000)
    assert not x.any()


def test_rational_scale_is_exact() -> None:
    for s in (0.1, 1.0, 3.0, 2.5e-3, 1e6 + 0.5, 2.0**52):
        num, den = N.rational_scale(s)
        assert Fraction(num, den) == Fraction(s)
    for bad in (0.0, -1.0, math.inf, math.nan, 2.0**53):
        with pytest.raises(ValueError):
            N.rational_scale(bad)


def test_discrete_laplace_checks_arguments() -> None:
    rng = dp.insecure_rng(1)
    with pytest.raises(ValueError):
        N.discrete_laplace(rng, 0, 1, 10)
    with pytest.raises(ValueError):
        N.discrete_laplace(rng, 2**53, 1, 10)
    out = np.zeros(10, dtype=np.int32)
    with pytest.raises(TypeError):
        N.discrete_laplace(rng, 1, 1, out=out)
    good = np.zeros(10, dtype=np.int64)
    assert N.discrete_laplace(rng, 5, 1, out=good) is not None
    assert good.any()
    with pytest.raises(ValueError):
        N.discrete_laplace(rng, 5, 1, out=good[::2])


# --- float-safe Laplace -----------------------------------------------------------------


@pytest.mark.parametrize("scale", [1.0, 1e-3, 7.5, 1e6])
def test_grid_laplace_ks(backend: str, scale: float) -> None:
    x = dp.laplace(scale, 100_000, rng=dp.insecure_rng(int(scale * 1000) % 1009))
    assert stats.kstest(x, stats.laplace(scale=scale).cdf).pvalue > ALPHA


@pytest.mark.parametrize("scale", [1.0, 0.3, 1e-3, 12345.678, 1e12])
def test_grid_outputs_are_exact_multiples_of_g(backend: str, scale: float) -> None:
    g = dp.granularity(scale)
    assert g == 2.0 ** math.ceil(math.log2(scale / 2**40))  # Google's choice
    values = np.array([0.0, 1.0, -3.3, 1e-9, 123456.789, 0.1, -0.7])
    rng = dp.insecure_rng(5)
    k = int(math.log2(g))
    for _ in range(3):
        y = N.laplace_on_grid(rng, np.repeat(values, 1000), scale, k)
        m = y / g  # exact: dividing by a power of two
        assert np.all(m == np.round(m))
    pure = dp.laplace(scale, 10_000, rng=rng) / g
    assert np.all(pure == np.round(pure))


def test_grid_handles_extremes_without_float_holes() -> None:
    rng = dp.insecure_rng(9)
    k = N.grid_exponent(1e-9)  # g = 2^-70: values of 200 are 2^77 grid steps
    y = N.laplace_on_grid(rng, np.array([200.0, -200.0, 1e300, 0.1]), 1e-9, k)
    assert abs(y[0] - 200.0) < 1e-6 and abs(y[1] + 200.0) < 1e-6  # not clamped to 2^-8
    assert np.all(y / 2.0**k == np.round(y / 2.0**k))
    assert np.isfinite(y[2]) and y[2] > 0  # clamped to 2^1000 grid steps, not inf
    assert abs(y[3] - 0.1) < 1e-6
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="finite"):
            N.laplace_on_grid(rng, np.array([1.0, bad]), 1.0, N.grid_exponent(1.0))
    with pytest.raises(ValueError):
        N.laplace_on_grid(rng, np.zeros((2, 2)), 1.0, N.grid_exponent(1.0))
    with pytest.raises(ValueError, match="coarser grid"):
        N.laplace_on_grid(rng, None, 1.0, -50, 4)


def test_calibrated_scale_accounts_for_the_grid() -> None:
    for sens, eps in [(1.0, 1.0), (10.0, 0.1), (0.5, 3.0)]:
        scale, g = dp.calibrated_scale(sens, eps)
        assert g == dp.granularity(sens / eps)
        assert Fraction(scale) >= (Fraction(sens) + Fraction(g)) / Fraction(eps)
        assert scale <= (sens + g) / eps * (1 + 1e-15)

"""medveil.dp helpers: calibration, clamping, the policy's noisy_value, intervals."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from medveil import _core
from medveil.privacy import dp
from scipy import stats


def test_add_laplace_is_on_the_grid_and_centred(backend: str) -> None:
    values = np.array([[1.0, 2.5], [-3.0, 1e6]])
    rng = dp.insecure_rng(3)
    scale, g = dp.calibrated_scale(1.0, 2.0)
    outs = np.stack([dp.add_laplace(values, 1.0, 2.0, rng=rng) for _ in range(4000)])
    assert outs.shape == (4000, 2, 2)
    assert np.all(outs / g == np.round(outs / g))
    noise = (outs - values).reshape(-1)
    assert stats.kstest(noise, stats.laplace(scale=scale).cdf).pvalue > 1e-3


def test_noisy_value_clamps_before_noise() -> None:
    # With a huge epsilon the noise is far below the grid of the output format.
    assert dp.noisy_value(250.0, 1.0, 1e9, 0.0, 200.0) == pytest.approx(200.0, abs=1e-6)
    assert dp.noisy_value(-5.0, 1.0, 1e9, 0.0, 200.0) == pytest.approx(0.0, abs=1e-6)
    assert dp.noisy_value(72.5, 1.0, 1e9, 0.0, 200.0) == pytest.approx(72.5, abs=1e-6)
    with pytest.raises(ValueError):
        dp.noisy_value(1.0, 1.0, 1.0, 5.0, 5.0)
    with pytest.raises(ValueError):
        dp.noisy_value(float("nan"), 1.0, 1.0, 0.0, 5.0)


def test_noisy_value_spread_matches_its_scale() -> None:
    # Sensitivity 10 within bounds [0, 200]: noise scale (10 + g) / epsilon.
    xs = np.array([dp.noisy_value(80.0, 10.0, 0.5, 0.0, 200.0) for _ in range(3000)])
    scale, _ = dp.calibrated_scale(10.0, 0.5)
    assert stats.kstest(xs - 80.0, stats.laplace(scale=scale).cdf).pvalue > 1e-4


def test_noisy_count_is_integer_and_exact_for_large_epsilon() -> None:
    rng = dp.insecure_rng(4)
    assert dp.noisy_count(17, 1e6, rng=rng) == 17
    x = [dp.noisy_count(0, 0.5, rng=rng) for _ in range(3000)]
    assert all(isinstance(v, int) for v in x)
    assert abs(np.mean(x)) < 0.5  # scale 2: the mean of 3000 draws is within 6 sigma


def test_noisy_mean_and_sum() -> None:
    rng = dp.insecure_rng(5)
    vals = np.linspace(0, 10, 1000)
    assert dp.noisy_mean(vals, 0.0, 10.0, 1e6, rng=rng) == pytest.approx(5.0, abs=1e-3)
    assert dp.noisy_mean(vals, 0.0, 4.0, 1e6, rng=rng) <= 4.0  # clamped values
    assert dp.noisy_sum([1.0, 50.0], 0.0, 10.0, 1e6, rng=rng) == pytest.approx(11.0, abs=1e-3)


def test_intervals_cover_95_percent() -> None:
    for scale in (0.5, 2.0, 30.0):
        w = dp.discrete_laplace_interval(scale)
        q = math.exp(-1 / scale)
        assert 2 * q ** (w + 1) / (1 + q) <= 0.05 < 2 * q**w / (1 + q) or w == 0
    assert dp.laplace_interval(1.0) == pytest.approx(math.log(20))


def test_scalar_and_array_forms() -> None:
    rng = dp.insecure_rng(6)
    assert isinstance(dp.laplace(1.0, rng=rng), float)
    assert isinstance(dp.discrete_laplace(1.5, rng=rng), int)
    assert dp.discrete_laplace(Fraction(3, 7), 10, rng=rng).shape == (10,)
    with pytest.raises(ValueError):
        dp.laplace(-1.0)
    with pytest.raises(ValueError):
        dp.insecure_rng(-1)


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=2.0**-80, max_value=2.0**52, allow_nan=False, allow_infinity=False))
def test_rational_scale_never_rounds_down(scale: float) -> None:
    num, den = _core.noise.rational_scale(scale)
    assert 1 <= num <= 2**62 and 1 <= den <= 2**62
    exact = Fraction(scale)
    got = Fraction(num, den)
    assert got >= exact
    if exact.denominator <= 2**62:
        assert got == exact
    else:
        assert got - exact < Fraction(1, 2**62)  # rounded up by less than one 2^-62 step


@settings(max_examples=300, deadline=None)
@given(
    st.floats(min_value=1e-6, max_value=1e9, allow_nan=False),
    st.floats(min_value=1e-4, max_value=1e4, allow_nan=False),
)
@example(1.0, 9501.0)  # 1 + g rounds to 1.0 in floats: found by this test
def test_calibration_covers_sensitivity_plus_grid(sensitivity: float, epsilon: float) -> None:
    scale, g = dp.calibrated_scale(sensitivity, epsilon)
    base = Fraction(sensitivity) / Fraction(epsilon)
    assert Fraction(g) >= base / 2**40 > Fraction(g) / 2  # the power of two Google picks
    assert Fraction(scale) * Fraction(epsilon) >= Fraction(sensitivity) + Fraction(g)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=1e-6, max_value=10.0), min_size=1, max_size=30))
def test_budget_accounting_is_exact_and_monotone(charges: list[float]) -> None:
    b = dp.PrivacyBudget(sum(charges) * 2 + 1)
    spent = 0.0
    for c in charges:
        b.charge(c)
        assert b.spent >= spent
        spent = b.spent
    assert b.spent == pytest.approx(sum(charges), abs=1e-9)


def test_exact_sums_round_once_to_the_grid() -> None:
    rng = dp.insecure_rng(12)
    third = Fraction(1, 3)
    scale, g = dp.calibrated_scale(1.0, 1.0)
    outs = np.array(dp.noisy_exact_sums([third] * 20_000, 1.0, 1.0, coordinates=20_000, rng=rng))
    assert np.all(outs / g == np.round(outs / g))
    steps = outs / g - round(third / Fraction(g))  # exact integers: the noise in grid steps
    scale_n, _ = dp.calibrated_scale(1.0, 1.0, coordinates=20_000)
    assert scale_n > scale  # one grid step per coordinate is paid for
    assert stats.kstest(steps * g, stats.laplace(scale=scale_n).cdf).pvalue > 1e-3


@settings(max_examples=200, deadline=None)
@given(
    st.floats(min_value=1e-6, max_value=1e9, allow_nan=False),
    st.floats(min_value=1e-4, max_value=1e4, allow_nan=False),
    st.integers(min_value=1, max_value=10**6),
)
def test_calibration_pays_a_grid_step_per_coordinate(
    sensitivity: float, epsilon: float, coordinates: int
) -> None:
    scale, g = dp.calibrated_scale(sensitivity, epsilon, coordinates=coordinates)
    need = Fraction(sensitivity) + coordinates * Fraction(g)
    assert Fraction(scale) * Fraction(epsilon) >= need


def test_keyed_noise_repeats_per_context_so_copies_cannot_be_averaged() -> None:
    secret = bytes(range(32))
    a = dp.noisy_value(80.0, 5.0, 1.0, 0.0, 250.0, rng=dp.keyed_rng(secret, "MV123", "weight"))
    b = dp.noisy_value(80.0, 5.0, 1.0, 0.0, 250.0, rng=dp.keyed_rng(secret, "MV123", "weight"))
    c = dp.noisy_value(80.0, 5.0, 1.0, 0.0, 250.0, rng=dp.keyed_rng(secret, "MV124", "weight"))
    d = dp.noisy_value(80.0, 5.0, 1.0, 0.0, 250.0, rng=dp.keyed_rng(bytes(32), "MV123", "weight"))
    assert a == b and len({a, c, d}) == 3
    # Context parts are separated, so ("ab", "c") and ("a", "bc") differ.
    assert dp.keyed_rng(secret, "ab", "c").bytes(32) != dp.keyed_rng(secret, "a", "bc").bytes(32)
    with pytest.raises(ValueError):
        dp.keyed_rng(b"short", "x")

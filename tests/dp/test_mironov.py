"""Mironov's attack (CCS 2012) on floating-point Laplace noise, and why medveil resists it.

The attacker sees one noisy output y and knows the true value is x = 0 or its neighbour
x' = 1 (sensitivity 1). With numpy's textbook sampler, y = fl(x + scale * log(2U)) for U on
the grid k 2^-53; many doubles y can only come from one of the two inputs, so seeing such a
y reveals the input with certainty, and differential privacy fails outright. medveil's
outputs are integers times a power-of-two grid g, and every such multiple is reachable from
both inputs, with probabilities within a factor exp(epsilon).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from medveil import _core
from medveil.privacy import dp

TWO53 = 2**53


def numpy_laplace_output(loc: float, k: int) -> float:
    """numpy's random_laplace(loc, 1.0) for U = k 2^-53 (numpy/random distributions.c)."""
    u = k / TWO53
    if u >= 0.5:
        return loc - 1.0 * math.log(2.0 - u - u)
    return loc + 1.0 * math.log(u + u)


def numpy_can_output(loc: float, y: float) -> bool:
    """Whether some U on numpy's grid makes random_laplace(loc, 1.0) return exactly y; the
    output is monotone in U on each branch, so a binary search over k decides it."""
    for lo, hi in ((1, TWO53 // 2 - 1), (TWO53 // 2, TWO53 - 1)):
        while lo < hi:
            mid = (lo + hi) // 2
            if numpy_laplace_output(loc, mid) < y:
                lo = mid + 1
            else:
                hi = mid
        if numpy_laplace_output(loc, lo) == y:
            return True
    return False


def test_model_of_numpy_laplace_is_exact() -> None:
    got = np.random.Generator(np.random.PCG64(11)).laplace(0.0, 1.0, 2000)
    us = np.random.Generator(np.random.PCG64(11)).random(2000)
    model = [numpy_laplace_output(0.0, round(u * TWO53)) for u in us]
    assert got.tolist() == model


def test_numpy_float_laplace_leaks_the_input() -> None:
    outputs = np.random.Generator(np.random.PCG64(2012)).laplace(0.0, 1.0, 300)
    assert all(numpy_can_output(0.0, y) for y in outputs)  # the search finds real outputs
    only_from_x = [y for y in outputs if not numpy_can_output(1.0, y)]
    # Concretely: these outputs of x = 0 are impossible under x' = 1, an infinite privacy
    # loss. Here most of them do (238 of 300 with this seed).
    assert len(only_from_x) > len(outputs) // 2, len(only_from_x)
    y = only_from_x[0]
    assert numpy_can_output(0.0, y) and not numpy_can_output(1.0, y)


def test_medveil_outputs_are_reachable_from_both_neighbours(backend: str) -> None:
    epsilon, sensitivity = 1.0, 1.0
    scale, g = dp.calibrated_scale(sensitivity, epsilon)
    k = int(math.log2(g))
    lam = Fraction(scale) / Fraction(g)  # noise scale in grid steps
    rng = dp.insecure_rng(2012)
    for x in (0.0, 1.0):
        outputs = _core.noise.laplace_on_grid(rng, np.full(2000, x), scale, k)
        n_x, n_other = Fraction(x) / Fraction(g), Fraction(1.0 - x) / Fraction(g)
        assert n_x.denominator == 1 and n_other.denominator == 1  # both inputs on the grid
        worst = Fraction(0)
        for y in outputs.tolist():
            m = Fraction(y) / Fraction(g)
            assert m.denominator == 1  # an exact multiple of the grid
            # The noise each input needs is an integer, so both have positive probability;
            # the log of the probability ratio is (|m - n_other| - |m - n_x|) / lambda.
            loss = (abs(m - n_other) - abs(m - n_x)) / lam
            worst = max(worst, abs(loss))
        assert worst <= Fraction(epsilon)

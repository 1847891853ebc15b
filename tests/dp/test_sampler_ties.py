"""Stress test of the exact discrete Laplace sampler's tie handling.

The core compares uniforms 16 bits at a time, so two of them tie on a chunk (and the
sampler must draw further chunks to decide) only once in 65536 comparisons: the tie paths
are rarely taken by ordinary runs. Here one model of the sampler's algorithm, with the
chunk width as a parameter, is
- at 16 bits, fed the core's keystream: it must give the core's samples exactly (so the
  model is the core's algorithm, tie handling included), and
- at 1 or 2 bits, fed random bits one or two at a time: nearly every comparison and every
  floor refinement is a tie, and the samples must still follow the exact discrete Laplace
  distribution (chi-square against the closed-form pmf).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import pytest
from medveil import _core
from scipy import stats

from .test_reference import Stream, chunks_for

N = _core.noise


class Source:
    """Where the model's random chunks come from."""

    def __init__(
        self,
        width: int,
        chunk: Callable[[], int],
        sign_word: Callable[[], int],
        ensure: Callable[[], None],
    ) -> None:
        self.width, self.chunk, self.sign_word, self.ensure = width, chunk, sign_word, ensure


def keystream_source(seed: bytes) -> Source:
    """The core's generator, read as the core reads it (16-bit chunks)."""
    st = Stream(seed)
    return Source(16, lambda: st.read(2), lambda: st.read(4), lambda: st.ensure(8))


def narrow_source(width: int, seed: int) -> Source:
    """Independent uniform chunks of 1 or 2 bits (Python's Mersenne Twister)."""
    rng = random.Random(seed)
    return Source(width, lambda: rng.getrandbits(width), lambda: rng.getrandbits(32), lambda: None)


def sample(src: Source, scale: Fraction, n: int, upfront: int) -> list[int]:
    """n discrete Laplace samples of `scale`: the core's algorithm with chunks of src.width
    bits (von Neumann exponential by descending runs, exact floor by refinement, a sign
    bit, negative zero rejected)."""
    base = 1 << src.width

    def below(v: list[int], cur: list[int]) -> bool:
        i = 0
        while True:
            if i > 0:
                v.append(src.chunk())  # the new uniform's chunk first, then cur's
                if i >= len(cur):
                    cur.append(src.chunk())
            if v[i] != cur[i]:
                return v[i] < cur[i]
            i += 1

    bits, nbits, out = 0, 0, []
    while len(out) < n:
        j = 0
        while True:
            src.ensure()
            f = [src.chunk() for _ in range(upfront)]
            src.ensure()
            cur, steps = f, 0
            while True:
                v = [src.chunk()]
                if not below(v, cur):
                    break
                cur, steps = v, steps + 1
            if steps % 2 == 0:
                break
            j += 1
        w, width, used = 0, Fraction(1), 0
        for chunk in f[:upfront]:
            w, width, used = w * base + chunk, width / base, used + 1
        while True:
            lo = scale * (j + w * width)
            hi = scale * (j + (w + 1) * width)
            y = math.floor(lo)
            if hi <= y + 1:
                break
            nxt = f[used] if used < len(f) else src.chunk()
            w, width, used = w * base + nxt, width / base, used + 1
        if nbits == 0:
            bits, nbits = src.sign_word(), 32
        negative = bits & 1
        bits, nbits = bits >> 1, nbits - 1
        if negative and y == 0:
            continue
        out.append(-y if negative else y)
    return out


@pytest.mark.parametrize("num,den", [(10, 1), (1, 2), (7, 3), (65535, 1), (70001, 1)])
def test_model_at_16_bits_is_the_core(backend: str, num: int, den: int) -> None:
    seed = (num * 7919 + den).to_bytes(32, "little")
    scale = Fraction(num, den)
    got = N.discrete_laplace(N.Rng.insecure_from_seed(seed), num, den, 5000)
    assert got.tolist() == sample(keystream_source(seed), scale, 5000, chunks_for(scale))


def exact_pmf(scale: Fraction, ys: np.ndarray) -> np.ndarray:
    """P(Y = y) = (1 - q) / (1 + q) * q^|y| with q = exp(-1/scale)."""
    q = math.exp(-1 / float(scale))
    return (1 - q) / (1 + q) * q ** np.abs(ys)


@pytest.mark.parametrize("width", [1, 2])
@pytest.mark.parametrize(
    "num,den",
    [(1, 2), (1, 1), (5, 2), (7, 3), (3, 1)],  # scales 0.5 .. 3, one not a power of two
)
def test_one_or_two_bits_at_a_time_give_the_exact_distribution(
    width: int, num: int, den: int
) -> None:
    scale = Fraction(num, den)
    n = 30_000
    ys = np.array(sample(narrow_source(width, seed=num * 31 + den * 7 + width), scale, n, 1))
    # Bins y = -K..K with expected counts >= 5, the two tails merged into the end bins.
    k = 0
    while n * exact_pmf(scale, np.array([k + 1]))[0] >= 5:
        k += 1
    support = np.arange(-k, k + 1)
    expected = n * exact_pmf(scale, support)
    tail = n * exact_pmf(scale, np.array([k + 1]))[0] / (1 - math.exp(-1 / float(scale)))
    expected[0] += tail
    expected[-1] += tail
    observed = np.array([np.sum(ys == y) for y in support], dtype=float)
    observed[0] += np.sum(ys < -k)
    observed[-1] += np.sum(ys > k)
    assert abs(expected.sum() - n) < 1e-6 * n
    p = stats.chisquare(observed, expected).pvalue
    assert p > 1e-4, f"width {width}, scale {scale}: chi-square p = {p:.2e}"
    # The mean absolute value against its exact value, E|Y| = 2q / (1 - q^2), within 5
    # standard errors (Var Y = 2q / (1 - q)^2 gives the spread of |Y|).
    q = math.exp(-1 / float(scale))
    mean_abs = 2 * q / (1 - q * q)
    sd = math.sqrt(2 * q / (1 - q) ** 2 - mean_abs**2)
    assert abs(np.abs(ys).mean() - mean_abs) < 5 * sd / math.sqrt(n)

"""Differential test: the C++ discrete Laplace sampler against a plain Python model of the
same algorithm, fed the same keystream, must give identical samples.

The model is written for clarity, not speed: uniforms are Python lists of 16-bit chunks
compared one chunk at a time, and the floor of scale * (J + F) is refined with exact
fractions. It reproduces the generator's byte accounting (8 KiB fast-key-erasure buffers
of which 8160 bytes are output; a read that does not fit in what is left of a buffer moves
to the next one), so any divergence, in the branch-free fast path, the tie handling, the
128-bit floor or the sign reservoir, shows up as a different sample.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from medveil import _core

N = _core.noise


class Stream:
    """The fast-key-erasure keystream, read the way the C++ generator reads it."""

    def __init__(self, seed: bytes) -> None:
        self.key = seed
        self.block = b""
        self.pos = 0

    def ensure(self, n: int) -> None:
        if len(self.block) - self.pos < n:
            enc = Cipher(algorithms.ChaCha20(self.key, bytes(16)), mode=None).encryptor()
            buf = enc.update(bytes(8192))
            self.key, self.block, self.pos = buf[:32], buf[32:], 0

    def read(self, n: int) -> int:
        self.ensure(n)
        v = int.from_bytes(self.block[self.pos : self.pos + n], "little")
        self.pos += n
        return v


def chunks_for(scale: Fraction) -> int:
    """How many 16-bit chunks of F are drawn up front: the fewest with 2^(16 c) > scale."""
    return next(c for c in (1, 2, 3, 4) if scale < 2 ** (16 * c)) if scale < 2**48 else 4


def below(st: Stream, v: list[int], cur: list[int]) -> bool:
    """Whether the fresh uniform v (first chunk drawn) is below cur; draws as needed."""
    i = 0
    while True:
        if i > 0:
            v.append(st.read(2))  # the new uniform's chunk first, then cur's
            if i >= len(cur):
                cur.append(st.read(2))
        if v[i] != cur[i]:
            return v[i] < cur[i]
        i += 1


def model(seed: bytes, num: int, den: int, n: int) -> list[int]:
    """n discrete Laplace samples of scale num/den, as the C++ sampler draws them."""
    st = Stream(seed)
    scale = Fraction(num, den)
    c = chunks_for(scale)
    bits, nbits, out = 0, 0, []
    while len(out) < n:
        j = 0
        while True:  # von Neumann: F, then a descending run; accept on an even run
            st.ensure(8)
            f = [st.read(2) for _ in range(c)]
            st.ensure(8)
            cur, steps = f, 0
            while True:
                v = [st.read(2)]
                if not below(st, v, cur):
                    break
                cur, steps = v, steps + 1
            if steps % 2 == 0:
                break
            j += 1
        # floor(scale * (j + F)): F's first c chunks bound it to an interval holding at
        # most one integer; while one is inside, take F's next chunk (stored ones first).
        w, width, used = 0, Fraction(1), 0
        for chunk in f[:c]:
            w, width, used = w * 65536 + chunk, width / 65536, used + 1
        while True:
            lo = scale * (j + w * width)
            hi = scale * (j + (w + 1) * width)  # F < (w + 1) width, strictly
            y = math.floor(lo)
            if hi <= y + 1:
                break
            nxt = f[used] if used < len(f) else st.read(2)
            w, width, used = w * 65536 + nxt, width / 65536, used + 1
        if nbits == 0:
            bits, nbits = st.read(4), 32
        negative = bits & 1
        bits, nbits = bits >> 1, nbits - 1
        if negative and y == 0:
            continue
        out.append(-y if negative else y)
    return out


@pytest.mark.parametrize(
    "num,den,n",
    [
        (10, 1, 40_000),  # one chunk of F
        (1, 2, 20_000),  # small scale: many rejected negative zeros
        (7, 3, 20_000),  # a denominator that is not a power of two
        (65535, 1, 20_000),  # floor in doubt almost every time: refinement path
        (70001, 1, 20_000),  # two chunks
        (2**40, 1, 20_000),  # the grid scale: three chunks
        (2**52, 1, 5_000),  # four chunks, the largest scale
        (3602879701896397, 2**55, 20_000),  # the double 0.1
    ],
)
def test_sampler_matches_python_model(backend: str, num: int, den: int, n: int) -> None:
    seed = (num * 1_000_003 + den).to_bytes(32, "little")
    got = N.discrete_laplace(N.Rng.insecure_from_seed(seed), num, den, n)
    assert got.tolist() == model(seed, num, den, n)


def test_grid_laplace_is_the_discrete_sampler_on_the_grid(backend: str) -> None:
    seed = bytes(range(32))
    scale = 3.7
    k = N.grid_exponent(scale)
    g = 2.0**k
    x = np.array([0.0, 1.0, -2.5, 1e-14, 123.456] * 400)
    out = N.laplace_on_grid(N.Rng.insecure_from_seed(seed), x, scale, k)
    num, den = N.rational_scale(scale / g)
    y = N.discrete_laplace(N.Rng.insecure_from_seed(seed), num, den, len(x))
    assert np.array_equal(out, (np.round(x / g) + y) * g)

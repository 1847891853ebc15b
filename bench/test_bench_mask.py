"""pytest-benchmark view of bench_mask.py: numpy and medveil side by side per group.

Run: python -m pytest bench/test_bench_mask.py --benchmark-enable --benchmark-group-by=group
(the normal test run passes --benchmark-disable: each case then runs once and still checks
its result against numpy). The table with spreads, bounds and GB/s is bench_mask.py's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import medveil
import numpy as np
import pytest
from bench_mask import label_rects
from medveil import _core
from medveil.pixels.masking import regions_array

STACKS = {
    "CT (200,512,512) int16": ((200, 512, 512), "int16"),
    "US (60,600,800,3) uint8": ((60, 600, 800, 3), "uint8"),
}
BACKENDS = list(_core.dispatch.available())
ROUNDS = 15


@pytest.fixture(scope="module", params=list(STACKS), ids=lambda s: s.split()[0])
def stack(request: pytest.FixtureRequest) -> tuple[str, np.ndarray]:
    """A pristine random stack, shared by every case of one module run."""
    shape, dtype = STACKS[request.param]
    rng = np.random.default_rng(1)
    return request.param, rng.integers(0, 4096 if dtype == "int16" else 256, size=shape).astype(
        dtype
    )


@pytest.fixture(params=["numpy", *BACKENDS])
def who(request: pytest.FixtureRequest) -> Iterator[str]:
    """numpy, or medveil forced to one backend (restored afterwards)."""
    if request.param != "numpy":
        medveil.set_backend(request.param)
    yield request.param
    medveil.set_backend("auto")


def operations(work: np.ndarray) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """Per operation: (numpy version, medveil version), both acting on `work` in place."""
    frames, rows, cols = work.shape[:3]
    band = (0, rows // 5, 0, cols)
    box = (8, 68, 16, 316)
    rects = label_rects(frames, rows, cols)
    rects_arr = regions_array(rects)

    def np_band() -> None:
        work[:, band[0] : band[1], :] = 0

    def np_box() -> None:
        work[:, box[0] : box[1], box[2] : box[3]] = 0

    def np_many() -> None:
        for r0, r1, c0, c1, f, _ in rects:
            work[f, r0:r1, c0:c1] = 0

    ops = {
        "1 band": (np_band, lambda: medveil.mask_regions(work, [band])),
        "1 box": (np_box, lambda: medveil.mask_regions(work, [box])),
        "label rects": (np_many, lambda: medveil.mask_regions(work, rects_arr)),
    }
    if work.dtype == np.int16:
        u = work.view(np.uint16)

        def np_fix() -> None:
            np.bitwise_and(u, np.uint16(0x0FFF), out=u)
            np.bitwise_xor(u, np.uint16(0x0800), out=u)
            np.subtract(u, np.uint16(0x0800), out=u)

        ops["fix bits"] = (np_fix, lambda: medveil.fix_unused_bits(work, 12, True))
    return ops


@pytest.mark.parametrize("op", ["1 band", "1 box", "label rects", "fix bits"])
def test_mask_vs_numpy(benchmark, stack, who, op) -> None:
    name, src = stack
    work = np.empty_like(src)
    ops = operations(work)
    if op not in ops:
        pytest.skip(f"{op} applies to 16-bit stacks only")
    np_fn, mv_fn = ops[op]
    np.copyto(work, src)
    np_fn()
    expected = work.copy()
    benchmark.group = f"{name}: {op}"
    benchmark.pedantic(
        np_fn if who == "numpy" else mv_fn,
        setup=lambda: np.copyto(work, src),
        rounds=ROUNDS,
        iterations=1,
    )
    np.testing.assert_array_equal(work, expected)


def test_copy_floor(benchmark, stack) -> None:
    name, src = stack
    dst = np.empty_like(src)
    benchmark.group = f"{name}: bandwidth floor"
    benchmark.pedantic(np.copyto, args=(dst, src), rounds=ROUNDS, iterations=1)
    np.testing.assert_array_equal(dst, src)

"""Pixel-masking kernels vs numpy, with np.copyto as the memory-bandwidth floor, in one run.

Run: python bench/bench_mask.py [--repeat 21] [--markdown]   (about a minute)

Method (the machine is shared, so single timings are noisy):
- every repetition times every competitor once, in an order rotated per repetition, so
  a burst of load from other processes hits all competitors alike;
- before each timed call the stack is rewritten from a pristine copy (np.copyto), which
  also leaves it in the state a freshly decoded stack is in: the last ~L3-size bytes in
  cache, the rest in DRAM. Every competitor starts from that same state;
- times are medians over the repetitions, with the p10-p90 range as the spread; ratios
  are medians of the per-repetition ratios (competitors of one repetition ran moments
  apart) with their p10-p90 range;
- every medveil result is compared with the numpy result before timing, so a fast wrong
  kernel cannot pass.

Rectangles ("many"): 20 per frame on every frame, the size of text labels that devices
burn in: height uniform in 10..20 rows, width uniform in 50..300 columns, positions
uniform in the frame (seed 0). They may overlap, as labels in a corner often do.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import medveil
import numpy as np
from medveil import _core
from medveil.pixels.masking import regions_array

CACHE_LINE = 64


def label_rects(frames: int, rows: int, cols: int, per_frame: int = 20, seed: int = 0) -> list:
    """Random text-label rectangles (row0, row1, col0, col1, frame0, frame1), per frame."""
    rng = np.random.default_rng(seed)
    out = []
    for f in range(frames):
        for _ in range(per_frame):
            h = int(rng.integers(10, 21))
            w = int(rng.integers(50, 301))
            r0 = int(rng.integers(0, rows - h + 1))
            c0 = int(rng.integers(0, cols - w + 1))
            out.append((r0, r0 + h, c0, c0 + w, f, f + 1))
    return out


def touched_lines(shape: tuple[int, ...], itemsize: int, rects: list) -> tuple[int, int]:
    """(distinct bytes masked, distinct cache lines touched) by the rectangles, for the
    memory-traffic bound: a partly written line is read and written back whole."""
    frames, rows, cols = shape[:3]
    col_bytes = itemsize * (shape[3] if len(shape) == 4 else 1)
    covered = np.zeros((frames, rows, cols), dtype=bool)
    for r0, r1, c0, c1, f0, f1 in rects:
        covered[f0:f1, r0:r1, c0:c1] = True
    idx = np.flatnonzero(covered)
    lines = np.unique((idx * col_bytes) // CACHE_LINE)
    # A column spans col_bytes bytes; its last byte can reach the next line.
    last = np.unique((idx * col_bytes + col_bytes - 1) // CACHE_LINE)
    return int(idx.size) * col_bytes, int(np.union1d(lines, last).size)


@dataclass
class Competitor:
    """One timed operation: fn runs on the freshly reset stack."""

    name: str
    group: str
    fn: Callable[[], object]
    nbytes: int  # bytes the GB/s column counts
    backend: str = "-"
    times: list[float] = field(default_factory=list)


def run_interleaved(comps: list[Competitor], reset: Callable[[], None], repeat: int) -> None:
    """Time each competitor once per repetition, rotating the order every repetition."""
    for c in comps:  # warm-up: page faults, lazy imports, branch predictors
        _select(c)
        reset()
        c.fn()
    for rep in range(repeat):
        k = rep % len(comps)
        for c in comps[k:] + comps[:k]:
            _select(c)
            reset()
            t0 = time.perf_counter()
            c.fn()
            c.times.append(time.perf_counter() - t0)
    medveil.set_backend("auto")


def _select(c: Competitor) -> None:
    medveil.set_backend(c.backend if c.backend != "-" else "auto")


def pct(values: list[float], q: float) -> float:
    """Percentile q (0..100) of values."""
    return float(np.percentile(np.asarray(values), q))


@dataclass
class Row:
    """One line of the result table."""

    stack: str
    op: str
    backend: str
    gbs: float
    ms: float
    ms_lo: float
    ms_hi: float
    peer: str
    ratio: float
    ratio_lo: float
    ratio_hi: float


def summarize(stack: str, comps: list[Competitor], peers: dict[str, str]) -> list[Row]:
    """Rows for a stack; peers maps a group to the competitor name that ratios refer to."""
    by_name = {(c.name, c.backend): c for c in comps}
    rows = []
    for c in comps:
        med = pct(c.times, 50)
        peer_name = peers.get(c.group, "")
        peer = by_name.get((peer_name, "-"))
        if peer is not None and peer is not c:
            # A ratio > 1 means faster than the peer; per-repetition pairs share the load.
            # For the floor group this is the fraction of np.copyto's bandwidth.
            per_rep = [p / t for p, t in zip(peer.times, c.times, strict=True)]
            ratio, lo, hi = pct(per_rep, 50), pct(per_rep, 10), pct(per_rep, 90)
        else:
            ratio, lo, hi, peer_name = 1.0, 1.0, 1.0, "-"
        rows.append(
            Row(
                stack,
                c.name,
                c.backend,
                c.nbytes / med / 1e9,
                med * 1e3,
                pct(c.times, 10) * 1e3,
                pct(c.times, 90) * 1e3,
                peer_name,
                ratio,
                lo,
                hi,
            )
        )
    return rows


def run_stack(name: str, shape: tuple[int, ...], dtype: str, repeat: int) -> tuple[list, dict]:
    """Benchmark one image stack; returns table rows and the memory-traffic numbers."""
    rng = np.random.default_rng(1)
    src = rng.integers(0, 4096 if dtype == "int16" else 256, size=shape).astype(dtype)
    work = np.empty_like(src)
    dst = np.empty_like(src)
    np.copyto(dst, src)

    def reset() -> None:
        np.copyto(work, src)

    frames, rows, cols = shape[:3]
    item = src.dtype.itemsize
    col_bytes = item * (shape[3] if len(shape) == 4 else 1)
    backends = list(_core.dispatch.available())

    band = (0, rows // 5, 0, cols)  # a header band across the top fifth of every frame
    box = (8, 8 + 60, 16, 16 + 300)  # one 60 x 300 label box on every frame
    rects = list(label_rects(frames, rows, cols))
    rects_arr = regions_array(rects)
    many_bytes, many_lines = touched_lines(shape, item, rects)
    band_bytes = frames * (band[1] - band[0]) * cols * col_bytes
    box_bytes = frames * (box[1] - box[0]) * (box[3] - box[2]) * col_bytes
    ct_air = -1024  # CT "air": a non-zero, not byte-uniform mask value

    comps: list[Competitor] = [
        Competitor("np.copyto (floor)", "floor", lambda: np.copyto(dst, src), src.nbytes)
    ]
    peers = {"floor": "np.copyto (floor)"}
    cases: list[tuple[str, Callable[[], object], Callable[[], object], int]] = []

    def numpy_band(v: int = 0) -> Callable[[], object]:
        def fn() -> None:
            work[:, band[0] : band[1], band[2] : band[3]] = v

        return fn

    def numpy_box() -> None:
        work[:, box[0] : box[1], box[2] : box[3]] = 0

    def numpy_many() -> None:
        for r0, r1, c0, c1, f, _ in rects:
            work[f, r0:r1, c0:c1] = 0

    def mv(regions: object, v: int = 0) -> Callable[[], object]:
        return lambda: medveil.mask_regions(work, regions, v)

    cases.append(("1 band, top 20%, value 0", numpy_band(), mv([band]), band_bytes))
    if dtype == "int16":
        cases.append(
            (f"1 band, value {ct_air}", numpy_band(ct_air), mv([band], ct_air), band_bytes)
        )
    cases.append(("1 box 60x300", numpy_box, mv([box]), box_bytes))
    cases.append((f"{len(rects)} label rects", numpy_many, mv(rects_arr), many_bytes))
    for op, np_fn, mv_fn, nbytes in cases:
        peer = f"numpy: {op}"
        peers[op] = peer
        comps.append(Competitor(peer, op, np_fn, nbytes))
        for b in backends:
            comps.append(Competitor(f"medveil: {op}", op, mv_fn, nbytes, backend=b))
    list_op = f"{len(rects)} label rects"
    dots = [(r0, r0 + 1, c0, c0 + 1, f, f + 1) for r0, _, c0, _, f, _ in rects]

    def numpy_overhead() -> None:
        for r0, r1, c0, c1, f, _ in dots:
            work[f, r0:r1, c0:c1] = 0

    # The same loop on 1x1 rectangles: what the Python loop costs beyond its fills.
    comps.append(Competitor("numpy: same loop, 1x1 rects", "overhead", numpy_overhead, len(dots)))
    for b in backends:
        comps.append(
            Competitor(
                "medveil: same, regions as a list",
                list_op,
                mv(rects),
                many_bytes,
                backend=b,
            )
        )

    if dtype == "int16":
        u = work.view(np.uint16)

        def numpy_fix() -> None:
            np.bitwise_and(u, np.uint16(0x0FFF), out=u)
            np.bitwise_xor(u, np.uint16(0x0800), out=u)
            np.subtract(u, np.uint16(0x0800), out=u)

        comps.append(Competitor("numpy: fix bits (signed, 12)", "floor", numpy_fix, src.nbytes))
        for b in backends:
            comps.append(
                Competitor(
                    "medveil: fix bits (signed, 12)",
                    "floor",
                    lambda: medveil.fix_unused_bits(work, 12, True),
                    src.nbytes,
                    backend=b,
                )
            )

    check_correct(comps, reset, work)
    run_interleaved(comps, reset, repeat)
    rows_out = summarize(name, comps, peers)

    t_copy = pct(comps[0].times, 50)
    traffic = {"stack": name, "lines": many_lines, "masked": many_bytes, "rects": len(rects)}
    traffic["copy_gbs"] = 2 * src.nbytes / t_copy / 1e9  # read src + write dst
    named = {c.name: c for c in comps if c.backend == "-"}
    t_np = pct(named[f"numpy: {list_op}"].times, 50)
    t_over = pct(named["numpy: same loop, 1x1 rects"].times, 50)
    # The fastest sequential pass over the stack in this run (np.copyto, or an in-place
    # read-modify-write like fix bits, whose traffic is the masked lines' pattern: each line
    # read once and written once). Scattered short runs move their lines slower than that.
    peak = max(2 * src.nbytes / pct(c.times, 50) for c in comps if c.group == "floor")
    traffic["peak_gbs"] = peak / 1e9
    need = 2 * many_lines * CACHE_LINE / (t_np / 5)  # bytes/s for 5x the numpy loop
    traffic["bounds"] = (t_np * 1e3, t_over * 1e3, need / 1e9)
    for c in comps:
        if c.group == list_op:
            t = pct(c.times, 50)
            traffic[f"{c.name} [{c.backend}]"] = (t * 1e3, 2 * many_lines * CACHE_LINE / t / 1e9)
    return rows_out, traffic


def check_correct(comps: list[Competitor], reset: Callable[[], None], work: np.ndarray) -> None:
    """Every medveil competitor must leave exactly what its numpy peer leaves."""
    expected: dict[str, np.ndarray] = {}
    for c in comps:
        if c.name.startswith("numpy"):
            reset()
            c.fn()
            expected[c.group if c.group != "floor" else "fix"] = work.copy()
    for c in comps:
        if c.name.startswith("medveil"):
            _select(c)
            reset()
            c.fn()
            key = c.group if c.group != "floor" else "fix"
            if not np.array_equal(work, expected[key]):
                raise AssertionError(f"{c.name} [{c.backend}] differs from numpy")
    medveil.set_backend("auto")


def cpu_model() -> str:
    """The CPU model name as lscpu reports it."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def print_table(rows: list[Row], markdown: bool) -> None:
    """Print the rows as plain text or as a markdown table."""
    head = ["stack", "operation", "backend", "GB/s", "ms (p10-p90)", "vs", "ratio (p10-p90)"]
    lines = []
    for r in rows:
        lines.append(
            [
                r.stack,
                r.op,
                r.backend,
                f"{r.gbs:.2f}",
                f"{r.ms:.3f} ({r.ms_lo:.3f}-{r.ms_hi:.3f})",
                r.peer.replace("numpy: ", "numpy").replace(" (floor)", ""),
                f"{r.ratio:.2f} ({r.ratio_lo:.2f}-{r.ratio_hi:.2f})",
            ]
        )
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for cells in lines:
            print("| " + " | ".join(cells) + " |")
        return
    widths = [max(len(x) for x in col) for col in zip(head, *lines, strict=True)]
    for cells in [head, *lines]:
        print("  ".join(x.ljust(w) for x, w in zip(cells, widths, strict=True)))


def main() -> None:
    """Run both image stacks and print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=21)
    ap.add_argument("--markdown", action="store_true", help="print markdown tables")
    args = ap.parse_args()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"CPU: {cpu_model()}; backends: {', '.join(_core.dispatch.available())}")
    print(f"load average before the run: {load} ({os.cpu_count()} CPUs)")
    stacks = [
        ("CT (200,512,512) int16", (200, 512, 512), "int16"),
        ("US (60,600,800,3) uint8", (60, 600, 800, 3), "uint8"),
    ]
    # A stack small enough to stay in cache after the reset: no DRAM latency, so per-call
    # overheads weigh most. More repetitions, as each is short.
    stacks.append(("CT (4,512,512) int16, in cache", (4, 512, 512), "int16"))
    rows: list[Row] = []
    traffic = []
    for name, shape, dtype in stacks:
        r, t = run_stack(name, shape, dtype, args.repeat * (5 if shape[0] < 10 else 1))
        rows += r
        traffic.append(t)
    print_table(rows, args.markdown)
    print(
        "\nGB/s: bytes masked (mask rows) or buffer bytes (copy, fix bits) / median time."
        "\nratio: peer time / this time, median of per-repetition pairs; > 1 is faster."
        " Mask rows are compared with the numpy row of the same operation; copy and"
        " fix-bits rows with np.copyto (fraction of the bandwidth floor)."
    )
    print("\nMemory traffic of the label rectangles (each touched line read and written once):")
    for t in traffic:
        print(
            f"  {t['stack']}: {t['rects']} rects, {t['masked'] / 1e6:.1f} MB masked, "
            f"{t['lines']} lines touched = {2 * t['lines'] * CACHE_LINE / 1e6:.1f} MB of"
            f" traffic; np.copyto moves {t['copy_gbs']:.1f} GB/s (read + write), the"
            f" fastest streaming pass {t['peak_gbs']:.1f} GB/s"
        )
        for k, v in t.items():
            if isinstance(v, tuple) and k != "bounds":
                print(f"    {k}: {v[0]:.2f} ms -> {v[1]:.1f} GB/s of line traffic")
        t_np, t_over, need_gbs = t["bounds"]
        print(
            f"    numpy loop {t_np:.2f} ms, of which {t_over:.2f} ms is call overhead (the same"
            f" loop on 1x1 rects). 5x the loop means {t_np / 5:.2f} ms, i.e. {need_gbs:.1f} GB/s"
            f" of scattered line traffic = {need_gbs / t['peak_gbs']:.2f} x the fastest"
            " sequential pass over the whole stack in this run."
        )


if __name__ == "__main__":
    main()

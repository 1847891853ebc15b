"""Laplace noise: medveil's exact samplers vs numpy's float Laplace and OpenDP, in one run.

Run: python bench/bench_dp.py [--size 1000000] [--repeat 7] [--opendp-size N] [--markdown]

Competitors, each drawing `size` samples of scale 1 (Laplace) or 10 (discrete):
- numpy ``Generator.laplace`` (PCG64, inverse CDF in floating point: fast, not private);
- medveil ``dp.laplace``: the float-safe Laplace on the grid 2^k ~ scale / 2^40
  (OS-seeded ChaCha20, exact discrete Laplace in grid steps);
- medveil ``dp.add_laplace`` on a vector of values (round to the grid + noise);
- medveil ``discrete_laplace`` (scale 10) and the literal CKS 2020 Algorithm 2 it replaces;
- OpenDP ``make_laplace`` on an int vector (its exact discrete sampler) and on a float
  vector (its float-safe Laplace), timed once each on `--opendp-size` elements because
  they run at tens of thousands of samples per second.

Method: times are CPU time of this process (time.process_time): every competitor is
single-threaded, and on a shared machine wall time mostly measures the other tenants.
Every repetition times every fast competitor once, in an order rotated per repetition, so
cache and frequency effects of other load hit them alike; times are medians, ratios are
medians of per-repetition ratios with their p10-p90 range. Before timing, medveil's outputs
are checked (exact grid multiples, variance within 1% of 2 scale^2), so a fast wrong
sampler cannot pass.

Where the time goes: the generator counts the keystream bytes each sampler consumes; with
the keystream's own speed (``keystream`` of 8 MiB) that gives the share of each sample's
time spent making random bytes, per SIMD backend.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import numpy as np
from medveil import _core
from medveil.privacy import dp

N = _core.noise


def timed(fn: Callable[[], object]) -> float:
    """CPU seconds one call of fn takes (every competitor is single-threaded)."""
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def pct(xs: list[float], q: float) -> float:
    """The q-th percentile of xs."""
    return float(np.percentile(np.asarray(xs), q))


def check_outputs(size: int) -> None:
    """Refuse to time samplers whose outputs are wrong."""
    rng = dp.insecure_rng(0)
    x = dp.laplace(1.0, size, rng=rng)
    g = dp.granularity(1.0)
    assert np.all(x / g == np.round(x / g)), "grid Laplace outputs off the grid"
    assert abs(x.var() / 2.0 - 1) < 0.01, f"grid Laplace variance {x.var()} != 2"
    q = np.exp(-1 / 10)
    want = 2 * q / (1 - q) ** 2
    for f in (N.discrete_laplace, N.discrete_laplace_cks):
        z = f(rng, 10, 1, size)
        assert abs(z.var() / want - 1) < 0.01, f"{f.__name__} variance {z.var()} != {want}"


def keystream_bytes_per_second() -> float:
    """Raw ChaCha20 keystream speed of the active backend (best of 5, 8 MiB each)."""
    n = 8 << 20
    return n / min(timed(lambda: N.keystream(bytes(32), bytes(12), 0, n)) for _ in range(5))


def where_time_goes(size: int, repeat: int) -> list[dict]:
    """Per backend: samples/s, keystream bytes per sample and the keystream's time share."""
    rows = []
    before = _core.dispatch.active()
    try:
        for backend in _core.dispatch.available():
            _core.dispatch.set_backend(backend)
            ks = keystream_bytes_per_second()
            for name, fn in (
                ("grid Laplace", lambda r: N.laplace_on_grid(r, None, 1.0, -40, size)),
                ("discrete Laplace", lambda r: N.discrete_laplace(r, 10, 1, size)),
                ("CKS Algorithm 2", lambda r: N.discrete_laplace_cks(r, 10, 1, size)),
            ):
                rng = dp.insecure_rng(1)
                fn(rng)
                per_sample = rng.bytes_used / size
                rate = size / float(
                    np.median([timed(lambda f=fn, r=rng: f(r)) for _ in range(repeat)])
                )
                share = (per_sample / ks) * rate
                rows.append(
                    dict(backend=backend, sampler=name, rate=rate, bytes=per_sample,
                         keystream=ks, share=share)
                )  # fmt: skip
    finally:
        _core.dispatch.set_backend(before)
    return rows


def opendp_rates(size: int) -> dict[str, float]:
    """Samples/s of OpenDP's Laplace on an int and a float vector (one timed call each)."""
    try:
        import opendp.prelude as odp
    except ImportError:
        return {}
    odp.enable_features("contrib")
    out = {}
    m_int = odp.m.make_laplace(
        odp.vector_domain(odp.atom_domain(T=int)), odp.l1_distance(T=int), scale=10.0
    )
    data_int = [0] * size
    out["OpenDP discrete (int)"] = size / timed(lambda: m_int(data_int))
    m_float = odp.m.make_laplace(
        odp.vector_domain(odp.atom_domain(T=float, nan=False)), odp.l1_distance(T=float), scale=1.0
    )
    data_float = [0.0] * size
    out["OpenDP Laplace (float)"] = size / timed(lambda: m_float(data_float))
    return out


def main() -> None:
    """Run the benchmark and print the table (markdown with --markdown)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--opendp-size", type=int, default=None)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    n = args.size
    check_outputs(min(n, 1_000_000))

    gen = np.random.default_rng()
    rng = dp.default_rng()
    values = np.linspace(-100.0, 100.0, n)
    fast: dict[str, Callable[[], object]] = {
        "numpy Generator.laplace": lambda: gen.laplace(0.0, 1.0, n),
        "medveil dp.laplace (grid)": lambda: dp.laplace(1.0, n, rng=rng),
        "medveil dp.add_laplace": lambda: dp.add_laplace(values, 1.0, 1.0, rng=rng),
        "medveil discrete_laplace": lambda: dp.discrete_laplace(10.0, n, rng=rng),
        "medveil CKS Algorithm 2": lambda: N.discrete_laplace_cks(rng, 10, 1, n),
    }
    names = list(fast)
    times: dict[str, list[float]] = {k: [] for k in names}
    for rep in range(args.repeat):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for k in order:
            times[k].append(timed(fast[k]))
    rates = {k: n / float(np.median(v)) for k, v in times.items()}
    ratio_np = [
        a / b
        for a, b in zip(
            times["numpy Generator.laplace"], times["medveil dp.laplace (grid)"], strict=True
        )
    ]
    odp_rates = opendp_rates(args.opendp_size or n)

    cpu = platform.processor() or platform.machine()
    print(f"# Laplace noise, {n:,} samples, {args.repeat} repetitions, backend "
          f"{_core.dispatch.active()}, {cpu}")  # fmt: skip
    print()
    print("| sampler | samples/s |")
    print("| --- | ---: |")
    for k in names:
        print(f"| {k} | {rates[k] / 1e6:.1f} M |")
    for k, v in odp_rates.items():
        print(f"| {k} (n={args.opendp_size or n:,}) | {v / 1e3:.0f} K |")
    print()
    print(
        f"medveil dp.laplace / numpy: {np.median(ratio_np):.2f}x "
        f"(p10-p90 {pct(ratio_np, 10):.2f}-{pct(ratio_np, 90):.2f})"
    )
    grid = rates["medveil dp.laplace (grid)"]
    disc = rates["medveil discrete_laplace"]
    if "OpenDP Laplace (float)" in odp_rates:
        odp_float = odp_rates["OpenDP Laplace (float)"]
        odp_int = odp_rates["OpenDP discrete (int)"]
        print(f"medveil dp.laplace / OpenDP float Laplace: {grid / odp_float:.0f}x")
        print(f"medveil discrete_laplace / OpenDP discrete: {disc / odp_int:.0f}x")
    else:
        print("OpenDP not installed (pip install '.[bench]'): no OpenDP ratios")
    print()
    print("Where the time goes (keystream bytes per sample, share of time making them):")
    print()
    print(
        "| backend | sampler | samples/s | keystream B/sample | keystream GB/s | keystream share |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for r in where_time_goes(n, max(3, args.repeat // 2)):
        print(f"| {r['backend']} | {r['sampler']} | {r['rate'] / 1e6:.1f} M | {r['bytes']:.1f} | "
              f"{r['keystream'] / 1e9:.2f} | {r['share']:.0%} |")  # fmt: skip


if __name__ == "__main__":
    main()

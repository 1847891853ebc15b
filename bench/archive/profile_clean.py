"""Where medveil's time goes per file: cProfile of ``clean_instance`` in one process.

Run: python bench/archive/profile_clean.py CORPUS/ct [--limit 200] [--top 10]

``python -m cProfile -m medveil deid ...`` would profile only the parent, which does no
per-file work; this calls :func:`medveil.instance.clean_instance` (what every worker runs)
directly on the files, with the benchmark's policy (US pixel rule included). Reading the
file and writing the output are outside the profile: the worker does them around this call.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
import warnings
from pathlib import Path

from medveil.engine.dataset import Deidentifier
from medveil.engine.instance import clean_instance
from medveil.policy.schema import Policy

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    """Command line: profile clean_instance on a folder and print the top costs."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("folder")
    ap.add_argument("--limit", type=int, default=200, help="files profiled (default 200)")
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--out", help="also save the raw profile here (for snakeviz etc.)")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    policy_file = Path(os.environ.get("TMPDIR", "/tmp")) / "medveil-bench-profile-policy.toml"
    policy_file.write_text(f'[pixels]\nrules = ["{HERE / "us_pixel_rules.toml"}"]\n')
    engine = Deidentifier(Policy.load(str(policy_file)), os.urandom(32))
    paths = sorted(p for p in Path(args.folder).rglob("*") if p.is_file())[: args.limit]
    raws = [p.read_bytes() for p in paths]
    clean_instance(engine, raws[0], "warm-up")  # first-call imports and caches
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    statuses = [clean_instance(engine, raw, "input").status for raw in raws]
    prof.disable()
    wall = time.perf_counter() - t0
    print(
        f"{len(raws)} files, {statuses.count('written')} written, {wall:.2f} s under the profiler"
        f" ({len(raws) / wall:.1f} files/s; profiling slows Python calls), load "
        f"{os.getloadavg()[0]:.1f}"
    )
    if args.out:
        prof.dump_stats(args.out)
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)  # type: ignore[attr-defined]
    print(f"\ntop {args.top} by own time (tottime), share of {total:.2f} s profiled:")
    print("| function | calls | own s | own % | cumulative s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for (file, line, func), (_cc, nc, tt, ct, _callers) in rows[: args.top]:
        where = f"{Path(file).name}:{line}" if line else file
        print(f"| `{func}` ({where}) | {nc} | {tt:.3f} | {100 * tt / total:.1f} | {ct:.3f} |")
    print(f"\ntop {args.top} by cumulative time:")
    stats.sort_stats("cumulative").print_stats(args.top + 8)
    lines = buf.getvalue().splitlines()
    start = next((i for i, s in enumerate(lines) if "ncalls" in s), 0)
    print("\n".join(lines[start : start + args.top + 9]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Spark local[2] vs the local 2-worker archive run on the same corpus (same output checked).

    python bench/bench_spark.py --copies 40 --repeat 3

The corpus is the demo archive written ``--copies`` times with distinct patients and UIDs
(15 files each: 14 DICOM, 1 text). Each engine runs on the full corpus and on a tenth of
it, alternating, into fresh output folders; every Spark output tree must equal the local
one. A straight line through the two sizes splits each engine's time into a fixed cost
per run and a cost per file, which gives the per-file overhead of Spark and a projection
for a cluster (``--nodes``, ``--cores``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pydicom
from medveil.archive import deidentify_archive as local_run
from medveil.demo import demo_rule_file, write_demo_archive
from medveil.policy import Policy

SECRET = bytes(range(32))
POLICY = Policy(pixel_rule_files=(str(demo_rule_file()),))


def make_corpus(root: Path, copies: int) -> int:
    """Write the demo archive `copies` times with distinct IDs; returns the file count."""
    for k in range(copies):
        sub = root / f"site{k:03d}"
        write_demo_archive(sub)
        for p in sub.rglob("*.dcm"):
            ds = pydicom.dcmread(p)
            ds.PatientID = f"{ds.PatientID}-{k}"
            for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
                setattr(ds, kw, f"{getattr(ds, kw)}.{k}")
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.save_as(p, enforce_file_format=True)
    return sum(1 for p in root.rglob("*") if p.is_file())


def tree(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every output file (run records excluded)."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".medveil" not in p.parts
    }


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(fixed seconds, seconds per file) of the line through two (files, seconds) points."""
    (n0, t0), (n1, t1) = points
    per_file = (t1 - t0) / (n1 - n0)
    return t0 - per_file * n0, per_file


def main() -> int:
    """Run the comparison and print a table (times are medians of --repeat runs)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=40, help="demo archives in the corpus")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--nodes", type=int, default=100, help="cluster size for the projection")
    ap.add_argument("--cores", type=int, default=16, help="cores per node for the projection")
    args = ap.parse_args()

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from medveil import spark as mspark
    from pyspark.sql import SparkSession

    work = Path(tempfile.mkdtemp(prefix="medveil-bench-spark-"))
    try:
        sizes: dict[str, tuple[Path, int]] = {}
        small_copies = max(1, args.copies // 10)
        for label, copies in (("small", small_copies), ("full", args.copies)):
            folder = work / f"in-{label}"
            sizes[label] = (folder, make_corpus(folder, copies))
        t = time.perf_counter()
        spark = (
            SparkSession.builder.master("local[2]")
            .appName("medveil-bench")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.sql.shuffle.partitions", "2")
            .getOrCreate()
        )
        spark.sparkContext.setLogLevel("ERROR")
        startup = time.perf_counter() - t
        # The first job starts the Python workers and imports medveil in them: timed apart.
        t = time.perf_counter()
        mspark.deidentify_archive(
            spark, str(sizes["small"][0]), str(work / "warm"), policy=POLICY, secret=SECRET
        )
        first = time.perf_counter() - t

        times: dict[tuple[str, str], list[float]] = {}
        run = 0
        for _ in range(args.repeat):
            for label, (folder, _n) in sizes.items():
                run += 1
                out_l, out_s = work / f"l{run}", work / f"s{run}"
                t = time.perf_counter()
                local_run(folder, out_l, policy=POLICY, secret=SECRET, workers=2)
                times.setdefault(("local", label), []).append(time.perf_counter() - t)
                t = time.perf_counter()
                mspark.deidentify_archive(
                    spark, str(folder), str(out_s), policy=POLICY, secret=SECRET
                )
                times.setdefault(("spark", label), []).append(time.perf_counter() - t)
                if tree(out_s) != tree(out_l):
                    print("ERROR: Spark output differs from the local run", file=sys.stderr)
                    return 1
                shutil.rmtree(out_l)
                shutil.rmtree(out_s)
        spark.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    n_small, n_full = sizes["small"][1], sizes["full"][1]
    print(f"corpus: {n_full} files ({n_small} in the small run); medians of {args.repeat}")
    print(f"spark session start: {startup:.1f} s; first job (workers start): {first:.1f} s")
    print("| engine | small run | full run | files/s (full) | fixed s/run | ms/file |")
    print("| --- | --- | --- | --- | --- | --- |")
    fits = {}
    for eng in ("local", "spark"):
        fixed, per = fit([(n_small, med[(eng, "small")]), (n_full, med[(eng, "full")])])
        fits[eng] = (fixed, per)
        print(
            f"| {eng} | {med[(eng, 'small')]:.2f} s | {med[(eng, 'full')]:.2f} s | "
            f"{n_full / med[(eng, 'full')]:.0f} | {fixed:.2f} | {per * 1e3:.2f} |"
        )
    ratio = med[("spark", "full")] / med[("local", "full")]
    overhead = (fits["spark"][1] - fits["local"][1]) * 1e3
    print(f"spark/local time on the full corpus: {ratio:.2f}x (goal <= 1.5x)")
    print(f"per-file overhead of Spark: {overhead:.2f} ms/file (2 cores)")
    # Each of the 2 cores handles one file at a time: per-core cost = 2 * wall ms/file.
    per_core = 2 * fits["spark"][1]
    cores = args.nodes * args.cores
    rate = cores / per_core if per_core > 0 else float("inf")
    print(
        f"projection: {args.nodes} nodes x {args.cores} cores at {per_core * 1e3:.1f} ms per "
        f"file per core -> {rate:,.0f} files/s ({rate * 3600 / 1e6:.1f} M files/h), plus "
        f"~{fits['spark'][0]:.0f} s fixed per job, if storage keeps up"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

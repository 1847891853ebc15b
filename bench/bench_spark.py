"""Spark local[2] vs the local 2-worker archive run on the same corpus (same output checked).

    python bench/bench_spark.py [--ct 2000 --dx 20 --us 10] [--repeat 2]
    python bench/bench_spark.py --corpus FOLDER   # a corpus built by bench/archive/corpus.py

The corpus is the archive benchmark's (bench/archive/corpus.py: 512x512 CT slices,
3000x2500 radiographs, 60-frame 600x800 RGB ultrasound cines with burned-in text), at its
default size unless told. Each engine runs, taking turns going first, into fresh output
folders (dirty pages flushed before each timed run), on three inputs: a tenth of the CT
slices, all CT slices, and the whole corpus; every Spark output tree must equal the local
one. Times are the best of ``--repeat`` runs. The two
CT-only sizes split each engine's time into a fixed cost per run and a cost per file (a
straight line), which gives Spark's per-file overhead and a projection for a cluster
(``--nodes``, ``--cores``); the whole corpus gives the ratio.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

from medveil.policy.schema import Policy
from medveil.run.archive import deidentify_archive as local_run

HERE = Path(__file__).resolve().parent
SECRET = bytes(range(32))
POLICY = Policy(pixel_rule_files=(str(HERE / "archive" / "us_pixel_rules.toml"),))


def corpus_module() -> ModuleType:
    """bench/archive/corpus.py, imported by path (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "medveil_bench_corpus", HERE / "archive" / "corpus.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def count(folder: Path) -> int:
    """Files under folder."""
    return sum(1 for p in folder.rglob("*") if p.is_file())


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
    """Run the comparison and print a table (times are the best of --repeat runs)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ct", type=int, default=2000, help="CT slices (512x512)")
    ap.add_argument("--dx", type=int, default=20, help="radiographs (3000x2500)")
    ap.add_argument("--us", type=int, default=10, help="ultrasound cines (60x600x800 RGB)")
    ap.add_argument("--corpus", help="a corpus folder (ct/, dx/, us/) instead of building one")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--nodes", type=int, default=100, help="cluster size for the projection")
    ap.add_argument("--cores", type=int, default=16, help="cores per node for the projection")
    args = ap.parse_args()

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from medveil.run import spark as mspark
    from pyspark.sql import SparkSession

    work = Path(tempfile.mkdtemp(prefix="medveil-bench-spark-"))
    try:
        corpus = corpus_module()
        full = Path(args.corpus) if args.corpus else work / "corpus"
        if not args.corpus:
            corpus.build(full, args.ct, args.dx, args.us)
        n_ct = count(full / "ct")
        corpus.build_ct(work / "ct-tenth", max(1, n_ct // 10))
        inputs = {"ct-tenth": work / "ct-tenth", "ct": full / "ct", "all": full}
        files = {k: count(v) for k, v in inputs.items()}
        mb = sum(p.stat().st_size for p in full.rglob("*") if p.is_file()) / 1e6

        t = time.perf_counter()
        spark = (
            SparkSession.builder.master("local[2]")
            .appName("medveil-bench")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            # local mode: the driver JVM is the executor; Spark-read cines need the room
            .config("spark.driver.memory", "3g")
            .getOrCreate()
        )
        spark.sparkContext.setLogLevel("ERROR")
        startup = time.perf_counter() - t
        # The first job starts the Python workers and imports medveil in them: timed apart.
        t = time.perf_counter()
        mspark.deidentify_archive(
            spark, str(inputs["ct-tenth"]), str(work / "warm"), policy=POLICY, secret=SECRET
        )
        first = time.perf_counter() - t
        load = os.getloadavg()[0]

        times: dict[tuple[str, str], list[float]] = {}
        run = 0
        for rep in range(args.repeat):
            for label, folder in inputs.items():
                run += 1
                outs = {"local": work / f"l{run}", "spark": work / f"s{run}"}
                engines = {
                    "local": lambda src, dst: local_run(
                        src, dst, policy=POLICY, secret=SECRET, workers=2
                    ),
                    "spark": lambda src, dst: mspark.deidentify_archive(
                        spark, str(src), str(dst), policy=POLICY, secret=SECRET
                    ),
                }
                # Alternate who goes first; flush dirty pages before each timed run so that
                # neither engine's syncfs pays for the other's writes.
                for eng in sorted(engines, reverse=bool(rep % 2)):
                    os.sync()
                    t = time.perf_counter()
                    engines[eng](folder, outs[eng])
                    times.setdefault((eng, label), []).append(time.perf_counter() - t)
                if tree(outs["spark"]) != tree(outs["local"]):
                    print("ERROR: Spark output differs from the local run", file=sys.stderr)
                    return 1
                for out in outs.values():
                    shutil.rmtree(out)
        spark.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {k: min(v) for k, v in times.items()}  # best of --repeat, as bench/archive
    print(
        f"corpus: {files['all']} files, {mb:.0f} MB ({files['ct']} CT, tenth: "
        f"{files['ct-tenth']}); best of {args.repeat}; load average {load:.1f} at start"
    )
    print(f"spark session start: {startup:.1f} s; first job (Python workers start): {first:.1f} s")
    print("| engine | CT tenth | CT | whole corpus | files/s (whole) | fixed s/run | ms/CT file |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    fits = {}
    for eng in ("local", "spark"):
        fits[eng] = fit(
            [(files["ct-tenth"], med[(eng, "ct-tenth")]), (files["ct"], med[(eng, "ct")])]
        )
        fixed, per = fits[eng]
        print(
            f"| {eng} | {med[(eng, 'ct-tenth')]:.2f} s | {med[(eng, 'ct')]:.2f} s | "
            f"{med[(eng, 'all')]:.2f} s | {files['all'] / med[(eng, 'all')]:.0f} | "
            f"{fixed:.2f} | {per * 1e3:.2f} |"
        )
    for label in inputs:
        print(f"spark/local on {label}: {med[('spark', label)] / med[('local', label)]:.2f}x")
    overhead = (fits["spark"][1] - fits["local"][1]) * 1e3
    print(f"per-file overhead of Spark (CT slices, 2 cores): {overhead:.2f} ms/file wall")
    # Two cores each clean one file at a time, so one core spends 2x the wall time per file.
    per_core = 2 * fits["spark"][1]
    cores = args.nodes * args.cores
    rate = cores / per_core if per_core > 0 else float("inf")
    print(
        f"projection: {args.nodes} nodes x {args.cores} cores at {per_core * 1e3:.1f} ms per "
        f"CT file per core -> {rate:,.0f} files/s ({rate * 3600 / 1e6:.1f} M files/h), plus "
        f"~{fits['spark'][0]:.0f} s fixed per job, if storage keeps up"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

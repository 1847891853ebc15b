"""CPU cost of :func:`medveil.engine.instance.clean_instance` per file, split by phase.

Run: python bench/profile_instance.py [-n 40] [--rounds 5] [--ct512] [--cold] [--profile]
     [--threads 1,2]

The corpus is made in memory: ``n`` copies (each its own SOP Instance UID and Instance
Number) of pydicom's ``CT_small.dcm`` and ``MR_small.dcm`` and of the demo archive's CT
and MR slices (:mod:`medveil.run.demo`), plus, with ``--ct512``, the archive benchmark's
512x512 CT header (``bench/archive/corpus.py``). Each file is timed with
``time.process_time`` (CPU seconds of this process, so other engineers' load on the shared
machine does not count), over ``--rounds`` rounds; the minimum per file is kept, then
averaged per kind.

The phase split re-runs, file by file, the steps clean_instance takes on the raw-byte road
(``strict``: check_structure; ``learn``: the post-check's terms; ``engine``: the raw-byte
engine, which reads and writes the bytes itself; ``post-check``: check_written, itself
split into ``scan`` (the core scanner's rows of the written file, or the span walk for a
file they do not cover) and ``search`` (decoded values and raw bytes); ``record``: the
catalog row and its check). ``learn`` and ``search`` are measured as a run meets them:
each kind is one series, so learn_terms' cache of what a series' files share and the
post-check's automata are warm after its first file; ``--cold`` clears those caches
before every timed call (every file the first of its series). The ``dataset`` columns
time the Dataset engine's road (read, engine, write) for the same files, as when the
raw-byte engine declines one. ``--profile`` adds a cProfile of clean_instance (top
functions by own time).

clean_instance is timed on each road: ``native`` (the C++ core's walk, the default: see
:mod:`medveil.engine.native`) and ``raw`` (the raw-byte engine in Python, the native road
switched off); ``engine (native)`` is the native road's own phase. ``--threads`` times
the native road's batch call (``NativeEngine.apply_batch``, each kind's files in one
batch) with that many threads: CPU seconds of the whole process per file, so threads'
work counts, and wall milliseconds per file.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
from medveil.dicom.io import read_dataset, write_fast_or_generic
from medveil.dicom.strict import check_structure
from medveil.engine import instance as inst
from medveil.engine import postcheck
from medveil.engine.dataset import Deidentifier
from medveil.policy.schema import Policy
from medveil.run.demo import write_demo_archive
from medveil.verify.elements import decoded_elements, scan_file
from pydicom.data import get_testdata_file
from pydicom.uid import UID


def _copies(raw: bytes, n: int) -> list[bytes]:
    """n distinct instances of one file (own SOP Instance UID and Instance Number)."""
    ds = pydicom.dcmread(io.BytesIO(raw))
    out = []
    for i in range(n):
        uid = UID(f"{ds.SOPInstanceUID}.9{i}")
        ds.SOPInstanceUID = uid
        if "file_meta" in ds.__dict__ or hasattr(ds, "file_meta"):
            ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.InstanceNumber = i + 1
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out.append(buf.getvalue())
    return out


def corpus(n: int, ct512: bool) -> dict[str, list[bytes]]:
    """The files to time, by kind."""
    kinds: dict[str, list[bytes]] = {}
    for name in ("CT_small.dcm", "MR_small.dcm"):
        kinds[name] = _copies(Path(str(get_testdata_file(name))).read_bytes(), n)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_demo_archive(tmp)
        ct = next(p for p in paths if p.parent.name == "ct")
        mr = next(p for p in paths if p.parent.name == "mr")
        kinds["demo CT 64x64"] = _copies(ct.read_bytes(), n)
        kinds["demo MR 64x64"] = _copies(mr.read_bytes(), n)
        if ct512:
            sys.path.insert(0, str(Path(__file__).resolve().parent / "archive"))
            import numpy as np
            from corpus import CT, header, patient  # type: ignore[import-not-found]
            from corpus import pixels as set_pixels

            ds = header(patient(1), CT, "1.2.826.0.1.3680043.10.1311.77.1", "1.2.3.4", 1)
            set_pixels(ds, np.zeros((512, 512), dtype=np.int16))
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            kinds["bench CT 512x512"] = _copies(buf.getvalue(), n)
    return kinds


def _cpu(fn: Callable[[], Any]) -> float:
    """CPU seconds of one call."""
    t = time.process_time()
    fn()
    return time.process_time() - t


def phases(engine: Deidentifier, raw: bytes) -> dict[str, float]:
    """CPU seconds of each step clean_instance takes on this file (raw road and Dataset road)."""
    out: dict[str, float] = {}
    out["strict"] = _cpu(lambda: check_structure(raw))
    box: dict[str, Any] = {}
    out["learn"] = _cpu(lambda: box.__setitem__("terms", postcheck.learn_terms(raw)))
    terms = box["terms"]
    raw_engine = inst.raw_engine_of(engine)
    out["engine (raw)"] = _cpu(lambda: box.__setitem__("out", raw_engine.apply(bytearray(raw))))
    native = inst.native_engine_of(engine)
    out["engine (native)"] = _cpu(lambda: native.apply(bytearray(raw)))
    written = b"".join(box["out"].parts)
    allow = engine.allowance
    out["post-check"] = _cpu(lambda: postcheck.check_written(written, terms, allow))
    out["  scan"] = _cpu(lambda: scan_file(written) or decoded_elements(written))
    out["  search"] = out["post-check"] - out["  scan"]
    o = box["out"]
    out["record"] = _cpu(
        lambda: inst._written(o.final, o.parts, o.report, len(raw), "raw", terms=terms, allow=allow)
    )
    out["read (dataset)"] = _cpu(
        lambda: box.__setitem__("ds", read_dataset(io.BytesIO(raw), "input", strict=False))
    )
    ds = box["ds"]
    out["engine (dataset)"] = _cpu(lambda: engine.apply(ds, source="input"))
    out["write (dataset)"] = _cpu(lambda: write_fast_or_generic(ds))
    return out


def _forget() -> None:
    """Empty the post-check's cross-file caches (a file as the first of its series)."""
    for name in ("_LEARNED", "_AUTOMATA"):
        cache = getattr(postcheck, name, None)
        if cache is not None:
            cache.clear()


def main(argv: list[str] | None = None) -> int:
    """Command line: time clean_instance per file and per phase; optionally profile it."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=40, help="copies of each file (default 40)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds; the minimum counts")
    ap.add_argument("--ct512", action="store_true", help="add the 512x512 bench CT header")
    ap.add_argument("--profile", action="store_true", help="cProfile clean_instance too")
    ap.add_argument(
        "--cold", action="store_true", help="clear the post-check's caches before each call"
    )
    ap.add_argument("--top", type=int, default=25, help="functions shown by --profile")
    ap.add_argument(
        "--threads", default="", help="time the native batch call with these thread counts"
    )
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    engine = Deidentifier(Policy.default(), bytes(range(32)))
    kinds = corpus(args.n, args.ct512)
    for files in kinds.values():  # first-call imports, caches, automata; the road learns
        inst.clean_instance(engine, bytearray(files[0]), "warm-up")
        res = inst.clean_instance(engine, bytearray(files[0]), "warm-up")
        phases(engine, files[0])
        if res.status != "written":
            print(f"warning: warm-up file {res.status}: {res.reason}", file=sys.stderr)
    print(f"load {os.getloadavg()[0]:.1f}; {args.n} files per kind, min of {args.rounds} rounds")
    print("\n| kind | road | clean_instance ms/file | files per CPU-s | status |")
    print("| --- | --- | ---: | ---: | --- |")
    for kind, files in kinds.items():
        for road in ("native", "raw"):
            inst.USE_NATIVE_ENGINE = road == "native"
            best = [float("inf")] * len(files)
            status = ""
            for _ in range(args.rounds):
                for i, raw in enumerate(files):
                    buf = bytearray(raw)  # as the archive worker hands it over
                    if args.cold:
                        _forget()
                    t = time.process_time()
                    res = inst.clean_instance(engine, buf, "input")
                    best[i] = min(best[i], time.process_time() - t)
                    status = res.status + (f" ({res.engine})" if res.engine else "")
            ms = 1000 * statistics.mean(best)
            print(f"| {kind} | {road} | {ms:.3f} | {1000 / ms:.0f} | {status} |")
    inst.USE_NATIVE_ENGINE = True
    if args.threads:
        native = inst.native_engine_of(engine)
        print("\nnative batch call (apply_batch, one batch per kind):\n")
        print("| kind | threads | CPU ms/file | wall ms/file | written natively |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for kind, files in kinds.items():
            for threads in (int(t) for t in args.threads.split(",")):
                cpu = wall = float("inf")
                done = 0
                for _ in range(args.rounds):
                    bufs = [bytearray(raw) for raw in files]
                    t, w = time.process_time(), time.perf_counter()
                    outs = native.apply_batch(bufs, threads=threads)
                    cpu = min(cpu, time.process_time() - t)
                    wall = min(wall, time.perf_counter() - w)
                    done = sum(not isinstance(o, (str, Exception)) for o in outs)
                n = len(files)
                print(
                    f"| {kind} | {threads} | {1000 * cpu / n:.3f} | {1000 * wall / n:.3f} "
                    f"| {done}/{n} |"
                )
    names: list[str] = []
    table: dict[str, dict[str, float]] = {}
    for kind, files in kinds.items():
        per: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for i, raw in enumerate(files):
                if args.cold:
                    _forget()
                for name, sec in phases(engine, raw).items():
                    lst = per.setdefault(name, [float("inf")] * len(files))
                    lst[i] = min(lst[i], sec)
        table[kind] = {name: 1000 * statistics.mean(v) for name, v in per.items()}
        names = list(per)
    print("\nphases, ms of CPU per file (min of rounds, mean over files):\n")
    print("| phase | " + " | ".join(table) + " |")
    print("| --- |" + " ---: |" * len(table))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{table[k][name]:.3f}" for k in table) + " |")
    if args.profile:
        prof = cProfile.Profile()
        every = [raw for files in kinds.values() for raw in files]
        prof.enable()
        for raw in every:
            inst.clean_instance(engine, bytearray(raw), "input")
        prof.disable()
        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf)
        stats.sort_stats("tottime").print_stats(args.top)
        print(f"\ncProfile of clean_instance on {len(every)} files (own time):")
        lines = buf.getvalue().splitlines()
        start = next((i for i, s in enumerate(lines) if "ncalls" in s), 0)
        print("\n".join(lines[start : start + args.top + 1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Leaks per hiding place and per policy: planted, leaked, quarantined.

Run: python bench/leaks.py [--api] [--places PATTERN]

Every case of the adversarial corpus (tests/adversarial/generator.py: one synthetic file
per hiding place, each with its own canaries) goes through ``clean_instance``, the
pipeline ``medveil deid``, the gateway and Spark share, under the default policy and under
the default plus each single PS3.15 option. A case leaks when any of its canaries is in
the written file (any encoding, inflated too), its output path or its catalog row;
options the default has are measured by taking each away (``no_...``); canaries an
option keeps on purpose are not counted (instance UIDs under Retain UIDs,
study dates under Retain Longitudinal Full Dates; names, IDs and the birth date always
are). With --api the Python API road (``Deidentifier.apply`` then ``write_dataset``,
without the pipeline's post-check) is counted as well.

Cells read ``w`` (written clean), ``Q`` (quarantined) or ``LEAK``; the totals give, per
policy, the cases planted, written, quarantined and leaked, and the release rate of the
undamaged cases.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pydicom
from medveil.dicom.io import write_dataset
from medveil.engine.dataset import Deidentifier
from medveil.engine.instance import clean_instance
from medveil.errors import MedveilError, QuarantineError
from medveil.policy.schema import Policy
from medveil.policy.standard import Option

from tests.adversarial.generator import Case, corpus, leaks

SECRET = bytes(range(32))
# Canary kinds each option keeps on purpose.
KEPT_BY = {
    Option.RETAIN_UIDS: {"uid"},
    Option.RETAIN_LONGITUDINAL_FULL_DATES: {"date"},
}


def policies() -> dict[str, tuple[Policy, set[str]]]:
    """The default policy and the default plus each single option, with kinds kept."""
    default = Policy()
    out = {"default": (default, set())}
    for opt in Option:
        # An option the default has is measured by taking it away ("no_..."), the others
        # by adding them.
        if opt in default.options:
            name, options = f"no_{opt.name.lower()}", tuple(o for o in default.options if o != opt)
            kept: set[str] = set()
        else:
            name, options = opt.name.lower(), (*default.options, opt)
            kept = KEPT_BY.get(opt, set())
        try:
            pol = Policy(options=options)
        except MedveilError as exc:  # a combination the policy layer refuses
            print(f"skipping {name}: {exc}", file=sys.stderr)
            continue
        out[name] = (pol, kept)
    return out


def leaked(case: Case, data: bytes, kept: set[str]) -> list[str]:
    """The case's canaries in data, minus those the policy keeps on purpose."""
    return [n for n in leaks(case, data) if case.kinds.get(n) not in kept]


def run_pipeline(engine: Deidentifier, case: Case, kept: set[str]) -> str:
    """'w', 'Q' or 'LEAK' for one case through clean_instance."""
    result = clean_instance(engine, bytearray(case.data), "input")
    if result.status != "written":
        return "LEAK" if leaked(case, result.reason.encode(), kept) else "Q"
    record = (json.dumps(result.row, default=str) + result.relpath).encode()
    return "LEAK" if leaked(case, result.data + b"\0" + record, kept) else "w"


def run_api(engine: Deidentifier, case: Case, kept: set[str]) -> str:
    """'w', 'Q' or 'LEAK' for one case through apply() then write_dataset()."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if case.damaged:
                data, _ = engine.apply_bytes(case.data, source="input")
            else:
                ds = pydicom.dcmread(io.BytesIO(case.data))
                engine.apply(ds, source="input")
                data = write_dataset(ds)
        except (MedveilError, QuarantineError):
            return "Q"
        except Exception:
            return "Q"  # the API raised: nothing written
    return "LEAK" if leaked(case, data, kept) else "w"


def main(argv: list[str] | None = None) -> int:
    """Print the table; exit 1 when anything leaked on the pipeline road."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--api", action="store_true", help="also count the Python API road")
    ap.add_argument("--places", default="", help="only hiding places matching this regex")
    args = ap.parse_args(argv)
    cases = [c for c in corpus() if re.search(args.places, c.place)]
    pols = policies()
    roads = ["pipeline", "api"] if args.api else ["pipeline"]
    cells: dict[tuple[str, str, str], str] = {}
    t0 = time.perf_counter()
    for pname, (pol, kept) in pols.items():
        engine = Deidentifier(pol, SECRET)
        for case in cases:
            cells[("pipeline", pname, case.place)] = run_pipeline(engine, case, kept)
            if args.api:
                cells[("api", pname, case.place)] = run_api(engine, case, kept)
    elapsed = time.perf_counter() - t0
    names = list(pols)
    short = {
        n: n.replace("retain_", "r_").replace("longitudinal_", "l_").replace("clean_", "c_")[:12]
        for n in names
    }
    width = max(len(c.place) for c in cases) + 2
    any_leak = False
    for road in roads:
        print(f"\n== {road} road: w = written clean, Q = quarantined, LEAK = canary out ==")
        print(f"{'hiding place':<{width}}{'class':<28}" + "".join(f"{short[n]:>13}" for n in names))
        for case in cases:
            row = "".join(f"{cells[(road, n, case.place)]:>13}" for n in names)
            print(f"{case.place:<{width}}{case.klass[:27]:<28}{row}")
        print()
        print(
            f"{'policy':<40}{'planted':>8}{'written':>8}{'quarant.':>9}{'leaked':>7}"
            f"{'release (undamaged)':>21}"
        )
        undamaged = [c for c in cases if not c.damaged]
        for n in names:
            got = [cells[(road, n, c.place)] for c in cases]
            w, q, leak = got.count("w"), got.count("Q"), got.count("LEAK")
            rel = sum(cells[(road, n, c.place)] == "w" for c in undamaged)
            any_leak |= road == "pipeline" and leak > 0
            print(
                f"{n:<40}{len(cases):>8}{w:>8}{q:>9}{leak:>7}"
                f"{rel:>12}/{len(undamaged)} ({100 * rel / max(1, len(undamaged)):.0f}%)"
            )
    runs = len(cases) * len(pols) * len(roads)
    print(f"\n{runs} runs in {elapsed:.1f} s ({1000 * elapsed / max(1, runs):.1f} ms each)")
    return 1 if any_leak else 0


if __name__ == "__main__":
    raise SystemExit(main())

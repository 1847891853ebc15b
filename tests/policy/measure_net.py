"""How much the safety net changes pydicom's test files (a measurement, not a test).

    .venv/bin/python tests/policy/measure_net.py

Prints, for the default policy: the elements at every depth that a safety-net rule
decides (by action and keyword), the files it touches, and the release rate of the whole
pipeline (clean_instance) with the net and without it.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections import Counter
from pathlib import Path

import pydicom
from medveil.engine import instance
from medveil.engine.dataset import Deidentifier
from medveil.policy import schema
from medveil.policy.schema import Policy
from pydicom.data import DATA_ROOT

SECRET = bytes(range(32))


def test_files() -> list[tuple[str, bytes]]:
    """pydicom's test files that look like DICOM."""
    out = []
    for path in sorted(Path(DATA_ROOT, "test_files").rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            if instance.looks_like_dicom(data[:132]):
                out.append((path.name, data))
    return out


def elements_decided(
    files: list[tuple[str, bytes]], policy: Policy
) -> tuple[Counter, Counter, int, int]:
    """(actions, keywords, elements seen, files touched) of safety-net rules."""
    compiled = policy.compile()
    actions: Counter[str] = Counter()
    keywords: Counter[str] = Counter()
    seen = touched = 0
    for _name, data in files:
        try:
            ds = pydicom.dcmread(__import__("io").BytesIO(data), force=True)
            elems = list(ds.iterall()) + list(getattr(ds, "file_meta", None) or [])
        except Exception:
            continue
        hit = False
        for e in elems:
            seen += 1
            tag = int(e.tag)
            if tag in compiled.net_tags:
                rule = compiled.by_tag[tag]
                if rule.action == "K":
                    actions["K (keep-list)"] += 1
                    continue
                actions[rule.action] += 1
                keywords[f"{e.keyword or hex(tag)} {rule.action}"] += 1
                hit = True
        touched += hit
    return actions, keywords, seen, touched


def release(files: list[tuple[str, bytes]], policy: Policy) -> Counter:
    """Written/quarantined counts of the whole per-file pipeline."""
    engine = Deidentifier(policy, SECRET)
    out: Counter[str] = Counter()
    for _name, data in files:
        out[instance.clean_instance(engine, bytearray(data), "input").status] += 1
    return out


def main() -> int:
    """Print the measurement."""
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    files = test_files()
    actions, keywords, seen, touched = elements_decided(files, Policy())
    print(f"{len(files)} files, {seen} elements (all depths, file meta included)")
    print(f"safety net decides {sum(actions.values())} of them in {touched} files: {dict(actions)}")
    for kw, n in keywords.most_common():
        print(f"  {n:5d}  {kw}")
    with_net = release(files, Policy())
    original = schema.CompiledPolicy._add_net
    schema.CompiledPolicy._add_net = lambda self, options, exempt: None  # type: ignore[method-assign]
    try:
        without = release(files, Policy())
    finally:
        schema.CompiledPolicy._add_net = original  # type: ignore[method-assign]
    print(f"release with the net: {dict(with_net)}; without: {dict(without)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

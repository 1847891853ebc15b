"""The native road against the raw-byte engine on one file: outcomes, bytes and reports."""

from __future__ import annotations

import logging
import os
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from medveil.dicom.io import inflate_file
from medveil.engine import instance as inst
from medveil.engine.dataset import Deidentifier
from medveil.engine.instance import CleanResult
from medveil.engine.native import NativeOutcome
from medveil.engine.raw import NotRaw

SECRET = bytes(range(32))


@contextmanager
def quiet() -> Iterator[None]:
    """pydicom warns (and its decoders log) about the invalid values tests use on purpose."""
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


@contextmanager
def native(on: bool) -> Iterator[None]:
    """clean_instance with the native road on or off."""
    old = inst.USE_NATIVE_ENGINE
    inst.USE_NATIVE_ENGINE = on
    try:
        yield
    finally:
        inst.USE_NATIVE_ENGINE = old


def pydicom_files() -> list[str]:
    """The names of pydicom's bundled .dcm test files on this machine (no download)."""
    folder = Path(pydicom.__file__).parent / "data" / "test_files"
    return sorted(n for n in os.listdir(folder) if n.endswith(".dcm"))


@dataclass
class Coverage:
    """Which files of a corpus the native road wrote, and why it left the others."""

    files: int = 0
    native: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def add(self, result: CleanResult) -> None:
        """Count one file's second pass (after the first one taught the road)."""
        self.files += 1
        if result.engine == "native":
            self.native += 1
        else:
            self.reasons[result.native_declined or f"{result.status}: {result.reason}"] += 1


def _same(ref: CleanResult, got: CleanResult, label: str) -> None:
    assert got.status == ref.status, (label, ref.status, got.status, ref.reason, got.reason)
    assert got.reason == ref.reason, label
    if ref.status != "written":
        return
    assert got.data == ref.data, f"{label}: output bytes differ"
    assert got.relpath == ref.relpath, label
    assert got.row == ref.row, label
    assert got.actions == ref.actions, label
    assert got.pixels == ref.pixels, label


def check_roads(engine: Deidentifier, data: bytes, label: str, cov: Coverage | None = None) -> None:
    """The native road (first and second pass) gives the raw-byte engine's result exactly.

    The reference is clean_instance with the native road off; then the road runs twice
    (the first pass may teach it the patient's answers). Where the road wrote the file,
    its report is also compared entry for entry with the raw-byte engine's.
    """
    with quiet():
        with native(False):
            ref = inst.clean_instance(engine, bytearray(data), "input")
        with native(True):
            first = inst.clean_instance(engine, bytearray(data), "input")
            second = inst.clean_instance(engine, bytearray(data), "input")
    _same(ref, first, label + " (first pass)")
    _same(ref, second, label + " (second pass)")
    if cov is not None:
        cov.add(second)
    if second.engine == "native":
        # clean_instance inflates a deflated data set before any road: so do the roads here.
        inflated = inflate_file(data)
        if inflated is not None:
            data = bytes(inflated)
        with quiet():
            nat = inst.native_engine_of(engine).apply(bytearray(data))
            try:
                raw = inst.raw_engine_of(engine).apply(bytearray(data))
            except NotRaw:
                raise AssertionError(f"{label}: native wrote what raw declines") from None
        assert isinstance(nat, NativeOutcome), (label, nat)
        assert nat.report.taken == raw.report.taken, label
        assert nat.report.date_offset_days == raw.report.date_offset_days, label
        assert b"".join(nat.parts) == b"".join(bytes(p) for p in raw.parts), label
        assert nat.implicit == raw.implicit, label

"""The scanner road for output references gives exactly what a pydicom read gives."""

from __future__ import annotations

from pathlib import Path

import pytest
from medveil.engine.dataset import Deidentifier
from medveil.engine.instance import clean_instance
from medveil.policy.schema import Policy
from medveil.run.outputs import references
from medveil.run.refs import output_references
from pydicom.data import get_testdata_file

from tests.corpus import realistic

SECRET = b"r" * 32
# Bundled pydicom files with references in sequences (RT, SR), a Frame of Reference, and
# the syntaxes the scanner road declines (big endian, deflated: the pydicom fallback).
PYDICOM_FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "image_dfl.dcm",
    "rtstruct.dcm",
    "rtplan.dcm",
    "rtdose.dcm",
    "test-SR.dcm",
    "JPEG2000.dcm",
    "emri_small.dcm",
]


def _outputs(paths: list[Path]) -> list[list[bytes]]:
    engine = Deidentifier(Policy(), secret=SECRET)
    outs = []
    for path in paths:
        result = clean_instance(engine, bytearray(path.read_bytes()), path.name)
        if result.status == "written":
            outs.append([bytes(p) for p in result.parts])
    return outs


@pytest.fixture(scope="module")
def realistic_outputs(tmp_path_factory: pytest.TempPathFactory) -> list[list[bytes]]:
    root = tmp_path_factory.mktemp("refs") / "in"
    realistic.generate(root, seed=3, patients=2)
    return _outputs(sorted(realistic.iter_files(root)))


def test_pydicom_files_agree() -> None:
    paths = []
    for name in PYDICOM_FILES:
        found = get_testdata_file(name, download=False)
        if found is not None:
            paths.append(Path(str(found)))
    outs = _outputs(paths)
    assert len(outs) >= 8, "too few bundled files were released to compare"
    for parts in outs:
        assert output_references(parts) == references(parts)


def test_realistic_archive_agrees(realistic_outputs: list[list[bytes]]) -> None:
    assert len(realistic_outputs) > 50
    with_refs = 0
    for parts in realistic_outputs:
        got = output_references(parts)
        assert got == references(parts)
        with_refs += bool(got[0])
    # The corpus has SR, RT and derived images: the comparison covers real references.
    assert with_refs >= 5


def test_nested_only_and_frame_at_top(realistic_outputs: list[list[bytes]]) -> None:
    # A top-level SOP Instance UID is not a reference; the frame is the data set's own.
    for parts in realistic_outputs[:20]:
        refs, frame = output_references(parts)
        assert all(r and "\x00" not in r and " " not in r for r in refs)
        assert frame == "" or frame.replace(".", "").isdigit()

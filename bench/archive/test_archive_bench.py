"""Checks that the archive benchmark measures what it says.

Run: python -m pytest bench/archive/test_archive_bench.py -q
The corpus carries PHI that medveil removes, the ultrasound part is masked (not
quarantined) only thanks to the bench's pixel rule, and the peak-RSS measurement sees a
process's real allocation.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import corpus  # bench/archive is on sys.path: pytest prepends a test's folder
import numpy as np
import pydicom
import pytest
import run as bench_run
from medveil.engine.dataset import Deidentifier
from medveil.engine.instance import clean_instance
from medveil.policy.schema import Policy

RULES = Path(__file__).resolve().parent / "us_pixel_rules.toml"


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny corpus: 4 CT slices of 64x64 and one 2-frame cine."""
    out = tmp_path_factory.mktemp("corpus")
    corpus.build_ct(out / "ct", 4, size=64)
    corpus.build_us(out / "us", 1, frames=2)
    return out


def engine(tmp_path: Path, with_rule: bool) -> Deidentifier:
    """medveil's engine with the default policy, plus the bench's US rule if asked."""
    if not with_rule:
        return Deidentifier(Policy.default(), os.urandom(32))
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[pixels]\nrules = ["{RULES}"]\n')
    return Deidentifier(Policy.load(str(policy)), os.urandom(32))


def test_ct_phi_planted_and_removed(small: Path, tmp_path: Path) -> None:
    """Every CT input holds the fake identity; medveil's output holds none of it."""
    eng = engine(tmp_path, with_rule=False)
    files = sorted((small / "ct").iterdir())
    assert len(files) == 4
    for f in files:
        raw = f.read_bytes()
        ds = pydicom.dcmread(io.BytesIO(raw))
        name, mrn = str(ds.PatientName), str(ds.PatientID)
        assert name.startswith(tuple(corpus.LAST)) and mrn.startswith("MRN")
        assert mrn.encode() in raw and b"Imaginary Road" in raw
        result = clean_instance(eng, raw)
        assert result.status == "written", result.reason
        for term in (mrn.encode(), name.encode(), b"Imaginary Road", b"555-"):
            assert term not in result.data


def test_us_masked_only_with_the_bench_rule(small: Path, tmp_path: Path) -> None:
    """Rules only and no rule: the cine is quarantined; with the rule its band is blanked.

    (The default policy, ``pixel_text = "auto"``, screens the cine for text instead.)
    """
    raw = next((small / "us").iterdir()).read_bytes()
    rules_only = Deidentifier(Policy(pixel_text="rules"), os.urandom(32))
    assert clean_instance(rules_only, raw).status == "quarantined"
    result = clean_instance(engine(tmp_path, with_rule=True), raw)
    assert result.status == "written", result.reason
    before = pydicom.dcmread(io.BytesIO(raw)).pixel_array
    after = pydicom.dcmread(io.BytesIO(result.data)).pixel_array
    assert before.shape == after.shape == (2, 600, 800, 3)
    assert before[:, :40, :400].min() == 255 and after[:, :40].max() == 0
    # Below the band only what the file's pixel record names may change: the default
    # policy also screens the cine for text and masks what it takes for text there.
    masked = np.zeros(before.shape[:3], dtype=bool)
    record = result.pixels
    assert record is not None
    for r0, r1, c0, c1, f0, f1 in record["regions"]:  # type: ignore[union-attr]
        masked[f0:f1, r0:r1, c0:c1] = True
    masked[:, :40] = True
    np.testing.assert_array_equal(before[~masked], after[~masked])


def test_measure_sees_the_allocation() -> None:
    """A child that touches 200 MB is reported at >= 200 MB, and a quick exit at far less."""
    code = "b = bytearray(200_000_000); b[::4096] = b'x' * len(b[::4096])"
    _s, rc, rss, _err = bench_run.measure([sys.executable, "-c", code], timeout=60)
    assert rc == 0
    assert 200 <= rss["largest"] < 400
    assert rss["tree"] <= rss["largest"] + 5  # the sampler may miss the peak, never exceed it
    _s, rc, small_rss, _err = bench_run.measure(["true"], timeout=60)
    assert rc == 0 and small_rss["largest"] < 20


def test_count_outputs_skips_run_records(tmp_path: Path) -> None:
    """medveil's .medveil folder is not counted as output files."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".medveil").mkdir()
    (tmp_path / "a" / "b" / "x.dcm").write_bytes(b"1")
    (tmp_path / "y.dcm").write_bytes(b"2")
    (tmp_path / ".medveil" / "catalog.sqlite").write_bytes(b"3")
    assert bench_run.count_outputs(tmp_path) == 2


def test_dx_text_found_under_the_default_policy(tmp_path: Path) -> None:
    """A ``--dx-text`` radiograph says BurnedInAnnotation YES; all four lines get masked."""
    rng = np.random.default_rng(5)
    clean = corpus.chest(rng)
    img = clean.copy()
    p = corpus.patient(7)
    corpus.burn_text(img, p)
    ink = img != clean
    assert ink[:300].any() and ink[-400:].any()  # top and bottom lines drawn
    corpus.build_dx(tmp_path / "dx", 2, text_every=2)
    files = sorted((tmp_path / "dx").iterdir())
    flags = [pydicom.dcmread(f).get("BurnedInAnnotation") for f in files]
    assert flags == ["YES", None]
    ds = corpus.header(p, corpus.DX, f"{corpus.ROOT}9", f"{corpus.ROOT}9.1", 1)
    ds.Modality, ds.BurnedInAnnotation = "DX", "YES"
    corpus.pixels(ds, img)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    result = clean_instance(Deidentifier(Policy.default(), os.urandom(32)), buf.getvalue())
    assert result.status == "written", result.reason
    masked = np.zeros(img.shape, dtype=bool)
    assert result.pixels is not None
    for r0, r1, c0, c1, _f0, _f1 in result.pixels["regions"]:  # type: ignore[union-attr]
        masked[r0:r1, c0:c1] = True
    # Anti-aliased fringes of under a quarter of the ink's level may stay outside.
    strong = np.abs(img.astype(np.int32) - clean) > 250
    assert not (strong & ~masked).any()

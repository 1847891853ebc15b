"""The native road writes the raw-byte engine's bytes, report and records on real files.

Every pydicom test file on the machine, the adversarial corpus (tests/adversarial), the
realistic archive (tests/corpus) and the archive benchmark's CT, under the default policy
and the presets. Files the road leaves to Python must come out exactly as before too.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from medveil.engine.dataset import Deidentifier
from medveil.policy.presets import PRESETS, load_policy
from medveil.policy.schema import Policy
from pydicom.data import get_testdata_file

from tests.adversarial.generator import corpus as adversarial_corpus
from tests.corpus.realistic import generate, iter_files
from tests.native.roads import SECRET, Coverage, check_roads, pydicom_files, quiet

POLICIES = ["default", *PRESETS]


def _engine(name: str) -> Deidentifier:
    policy = Policy.default() if name == "default" else load_policy(name)
    return Deidentifier(policy, SECRET)


@pytest.mark.parametrize("policy", POLICIES)
def test_pydicom_files(policy: str) -> None:
    engine = _engine(policy)
    cov = Coverage()
    for name in pydicom_files():
        data = Path(str(get_testdata_file(name))).read_bytes()
        check_roads(engine, data, f"{policy}: {name}", cov)
    # The common files are the road's: CT and MR slices of pydicom's set at least.
    if policy in ("default", "research", "basic"):
        assert cov.native >= 5, cov


def test_pydicom_ct_takes_the_native_road() -> None:
    engine = _engine("default")
    cov = Coverage()
    for name in ("CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm"):
        data = Path(str(get_testdata_file(name))).read_bytes()
        check_roads(engine, data, name, cov)
    assert cov.native == 3, cov.reasons


def test_adversarial_corpus() -> None:
    engines: dict[tuple[str, ...], Deidentifier] = {}
    cov = Coverage()
    for case in adversarial_corpus():
        engine = engines.get(case.options)
        if engine is None:
            policy = Policy.default()
            if case.options:
                toml = "[profile]\noptions = [" + ", ".join(f'"{o}"' for o in case.options) + "]\n"
                policy = Policy.from_toml(toml)
            engine = engines[case.options] = Deidentifier(policy, SECRET)
        check_roads(engine, case.data, case.place, cov)


@pytest.mark.parametrize("policy", ["default", "tcia", "safe-harbor"])
def test_realistic_archive(tmp_path: Path, policy: str) -> None:
    with quiet():
        generate(tmp_path, patients=2, scale=1)
    engine = _engine(policy)
    cov = Coverage()
    for path in iter_files(tmp_path):
        check_roads(engine, path.read_bytes(), f"{policy}: {path.name}", cov)
    assert cov.files > 20


def test_bench_ct_series() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "archive"))
    from corpus import CT, header, patient  # type: ignore[import-not-found]
    from corpus import pixels as set_pixels

    engine = _engine("default")
    cov = Coverage()
    for p in range(2):
        for n in range(1, 4):
            ds = header(patient(p), CT, f"1.2.826.0.1.3680043.10.1311.7{p}", f"1.2.3.{p}", n)
            set_pixels(ds, np.arange(64 * 64, dtype=np.int16).reshape(64, 64))
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            check_roads(engine, buf.getvalue(), f"bench CT {p}/{n}", cov)
    assert cov.native == cov.files, cov.reasons

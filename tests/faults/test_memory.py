"""Peak memory per worker on every input road: <= 2 x the largest accepted file + a constant.

A 128 MiB CT (large enough that the slack of the bound cannot hide a third copy) goes
through the folder road, a deflated zip member, a plain tar member, a gzipped tar member,
the Dataset engine (what a --vault run, --embed-originals and every file the raw-byte
engine declines take) and the Deflated Explicit VR transfer syntax. Each run is a child
process whose workers' peak RSS is measured (getrusage(RUSAGE_CHILDREN)) against a
baseline run of small files.

Measured on 64 MiB (2026-12-06): folder, zip, plain tar 1.90-1.91 x; gzipped tar 2.97 x;
Dataset engine 3.91 x; deflated transfer syntax 8.5 x the file (noise pixels), and 640 x
on a file whose pixels deflate well (a 0.4 MB file inflating to 64 MiB). The roads over
the bound are strict xfails naming the fix, which lies in files this test's owner does
not own (run/archive.py, engine/instance.py, dicom/io.py): a fix turns them into failures
until the mark is removed.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian

from .helpers import demo_input
from .test_hostile import SLACK

# One archive conversion with one worker (a vault when asked); the workers' peak RSS.
DRIVER = r"""
import json, resource, sys
from medveil.run.archive import deidentify_archive
src, out, vault_path = sys.argv[1], sys.argv[2], sys.argv[3]
vault = None
if vault_path:
    from medveil.crypto.vault import Vault
    vault = Vault(vault_path, bytes(range(1, 33)))
reasons = {}
s = deidentify_archive(src, out, secret=bytes(range(32)), workers=1, max_file_size=1 << 30,
                       vault=vault, on_quarantine=lambda n, r: reasons.__setitem__(n, r))
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"rss": rss, "summary": s.to_json(), "reasons": reasons}))
"""


def run_measured(src: Path, out: Path, vault: Path | None = None) -> dict:
    """Convert src in a child process; its workers' peak RSS, summary and reasons."""
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, str(src), str(out), str(vault or "")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


MB = 1 << 20
FRAMES = 4  # 4 x 4096 x 4096 x 16 bits: 128 MiB of pixel data


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> int:
    """Peak worker RSS over a run of small files: the constant of the bound."""
    tmp = tmp_path_factory.mktemp("baseline")
    return int(run_measured(demo_input(tmp / "in", copies=20), tmp / "out")["rss"])


@pytest.fixture(scope="module")
def big_ct(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real 128 MiB native CT instance (explicit VR little endian), as file bytes."""
    tmp = tmp_path_factory.mktemp("big")
    ds = pydicom.dcmread(next(demo_input(tmp / "d", copies=1).rglob("copy00000.dcm")))
    ds.Rows = ds.Columns = 4096
    ds.NumberOfFrames = FRAMES
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    # Noise: a deflated copy is then about as large as the native one (no bomb).
    rng = np.random.default_rng(20)
    ds.PixelData = rng.integers(0, 4096, FRAMES * 4096 * 4096, dtype=np.uint16).tobytes()
    body = io.BytesIO()
    ds.save_as(body, enforce_file_format=True)
    return body.getvalue()


def _deflated(data: bytes) -> bytes:
    """The instance re-encoded in the Deflated Explicit VR Little Endian transfer syntax."""
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    body = io.BytesIO()
    ds.save_as(body, enforce_file_format=True)
    return body.getvalue()


def _input(road: str, folder: Path, data: bytes) -> Path:
    """data as one input of the given road: a folder file or an archive member."""
    folder.mkdir(parents=True)
    if road in ("folder", "vault", "deflated"):
        (folder / "big.dcm").write_bytes(data)
        return folder
    if road == "zip":
        src = folder / "big.zip"
        with zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            zf.writestr("big.dcm", data)
        return src
    src = folder / ("big.tar.gz" if road == "tar.gz" else "big.tar")
    kw = {"compresslevel": 1} if road == "tar.gz" else {}
    with tarfile.open(src, "w:gz" if road == "tar.gz" else "w", **kw) as tf:  # type: ignore[call-overload]
        info = tarfile.TarInfo("big.dcm")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return src


@pytest.mark.slow
@pytest.mark.parametrize(
    "road",
    [
        "folder",
        "zip",
        "tar",
        "tar.gz",
        "vault",
        pytest.param(
            "deflated",
            marks=pytest.mark.xfail(
                strict=True,
                reason="a deflated transfer syntax is inflated whole and read by pydicom "
                "(8.5 x the file); fix: bounded inflation counted against the size limit",
            ),
        ),
    ],
)
def test_peak_worker_memory_within_twice_the_file(road, tmp_path, baseline, big_ct) -> None:
    data = _deflated(big_ct) if road == "deflated" else big_ct
    src = _input(road, tmp_path / "in", data)
    vault = tmp_path / "vault.sqlite" if road == "vault" else None
    r = run_measured(src, tmp_path / "out", vault)
    assert r["summary"]["written"] == 1, r["reasons"]
    engines = r["summary"]["engines"]
    assert engines == ({"dataset": 1} if road in ("vault", "deflated") else {"raw": 1})
    over = r["rss"] - baseline
    assert over <= 2 * len(data) + SLACK, f"{road}: {over / len(data):.2f} x the file"

"""Peak memory per worker on every input road: <= 2 x the largest accepted file + a constant.

A 128 MiB CT (large enough that the slack of the bound cannot hide a third copy) goes
through the folder road, a deflated zip member, a plain tar member, a gzipped tar member,
the Dataset engine (what a --vault run, --embed-originals and every file the raw-byte
engine declines take, big endian among them) and the Deflated Explicit VR transfer
syntax. Each run is a child process whose workers' peak RSS is measured
(getrusage(RUSAGE_CHILDREN)) against a baseline run of small files.

Measured on 128 MiB (2026-12-06), peak worker RSS over the baseline / the file: before
the fixes folder, zip, plain tar 2.00 x; gzipped tar 3.00 x (members pickled through the
task pipe); Dataset engine 3.99 x (a BytesIO copy of the read buffer, pydicom's copy of
Pixel Data); deflated transfer syntax 8.65 x (inflated whole by the strict check, pydicom
and the post-check). After: every road 1.99-2.00 x, the deflated one 2.34 x its 109 MiB
file = 2.0 x the 128 MiB it inflates to (the size counted against the limit). A deflate
bomb, bare or zipped, is refused at the limit with the memory of a small file. Still
over before its fix: big endian (Dataset engine, 2.99 x: the pixel cleaner copied the image
to swap its bytes; it now swaps them in place and back), now within the bound too.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from medveil.dicom.strict import dataset_offset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian

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


def _big_endian(data: bytes) -> bytes:
    """The instance re-encoded in Explicit VR Big Endian (the Dataset engine's road)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    body = io.BytesIO()
    pydicom.dcmwrite(body, ds, enforce_file_format=True, little_endian=False, implicit_vr=False)
    return body.getvalue()


def _input(road: str, folder: Path, data: bytes) -> Path:
    """data as one input of the given road: a folder file or an archive member."""
    folder.mkdir(parents=True)
    if road in ("folder", "vault", "deflated", "big-endian"):
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
        "deflated",
        "big-endian",
    ],
)
def test_peak_worker_memory_within_twice_the_file(road, tmp_path, baseline, big_ct) -> None:
    data = {"deflated": _deflated, "big-endian": _big_endian}.get(road, bytes)(big_ct)
    src = _input(road, tmp_path / "in", data)
    vault = tmp_path / "vault.sqlite" if road == "vault" else None
    r = run_measured(src, tmp_path / "out", vault)
    assert r["summary"]["written"] == 1, r["reasons"]
    engines = r["summary"]["engines"]
    # A deflated file is inflated into one buffer and cleaned as Explicit VR LE.
    assert engines == ({"dataset": 1} if road in ("vault", "big-endian") else {"raw": 1})
    over = r["rss"] - baseline
    assert over <= 2 * len(data) + SLACK, f"{road}: {over / len(data):.2f} x the file"


def _deflated_file(dataset: bytes) -> bytes:
    """A Part 10 file in the Deflated Explicit VR LE syntax around a raw deflate stream."""
    ds = pydicom.dcmread(io.BytesIO(_SMALL_DEFLATED))
    head = io.BytesIO()
    pydicom.filewriter.write_file_meta_info(head, ds.file_meta, enforce_standard=True)
    return b"\0" * 128 + b"DICM" + head.getvalue() + dataset


def _small_deflated() -> bytes:
    """A small real instance (pydicom's CT_small) in the deflated syntax, pixels removed."""
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.PixelData
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    body = io.BytesIO()
    ds.save_as(body, enforce_file_format=True)
    return body.getvalue()


_SMALL_DEFLATED = _small_deflated()


def _bomb(inflated: int) -> bytes:
    """A deflated-syntax file whose pixel data inflates to ``inflated`` zero bytes.

    The stream is CT_small's data set, a Pixel Data header, then one 1 MiB block of
    zeros compressed once and repeated (a full flush makes each block stand alone).
    """
    ds = pydicom.dcmread(io.BytesIO(_SMALL_DEFLATED))
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    plain = io.BytesIO()
    ds.save_as(plain, enforce_file_format=True)
    _, pos, _ = dataset_offset(plain.getvalue())
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    start = c.compress(plain.getvalue()[pos:] + b"\xe0\x7f\x10\x00OW\0\0")
    start += c.compress(inflated.to_bytes(4, "little")) + c.flush(zlib.Z_FULL_FLUSH)
    z = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = z.compress(b"\0" * MB) + z.flush(zlib.Z_FULL_FLUSH)
    end = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS).flush()  # the final block
    return _deflated_file(start + block * (inflated // MB) + end)


def test_bomb_helper_inflates_as_claimed() -> None:
    data = _bomb(8 * MB)
    ds = pydicom.dcmread(io.BytesIO(data))
    assert len(ds.PixelData) == 8 * MB and not any(ds.PixelData[::4096])
    assert ds.PatientName == pydicom.dcmread(io.BytesIO(_SMALL_DEFLATED)).PatientName


@pytest.mark.slow
@pytest.mark.parametrize("container", ["file", "zip"])
def test_deflate_bomb_is_refused_at_the_limit_with_little_memory(
    container, tmp_path, baseline
) -> None:
    """2.5 GiB from a 2.6 MB file (a 12 KB zip): refused past the 1 GiB limit, not inflated."""
    data = _bomb(2560 * MB)
    assert len(data) < 3 * MB
    src = _input("zip" if container == "zip" else "folder", tmp_path / "in", data)
    if container == "zip":
        assert src.stat().st_size < 64 * 1024
    r = run_measured(src, tmp_path / "out")
    assert r["summary"]["written"] == 0
    (reason,) = r["reasons"].values()
    assert reason == "too large once inflated: over the per-file limit of 1074 MB (--max-file-size)"
    assert r["rss"] - baseline <= SLACK, f"{(r['rss'] - baseline) / MB:.0f} MB over the baseline"


@pytest.mark.slow
def test_deflated_file_that_inflates_well_costs_twice_what_it_inflates_to(
    tmp_path, baseline
) -> None:
    """A 0.2 MB file inflating to 128 MiB (smooth pixels): cleaned within 2 x 128 MiB."""
    ds = pydicom.dcmread(io.BytesIO(_SMALL_DEFLATED))
    ds.Rows = ds.Columns = 4096
    ds.NumberOfFrames = FRAMES
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = (
        (np.arange(FRAMES * 4096 * 4096, dtype=np.uint32) // 4096 % 4096)
        .astype(np.uint16)
        .tobytes()
    )
    ds["PixelData"].VR = "OW"
    body = io.BytesIO()
    ds.save_as(body, enforce_file_format=True)
    data = body.getvalue()
    inflated = len(pydicom.dcmread(io.BytesIO(data)).PixelData)
    assert len(data) * 100 < inflated
    src = _input("folder", tmp_path / "in", data)
    r = run_measured(src, tmp_path / "out")
    assert r["summary"]["written"] == 1, r["reasons"]
    over = r["rss"] - baseline
    assert over <= 2 * inflated + SLACK, f"{over / inflated:.2f} x the inflated file"

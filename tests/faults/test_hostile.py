"""Hostile inputs: lying zip/tar headers, zip bombs, huge sparse files, FIFOs and devices.

Memory is measured, not assumed: each run is a child process that reports the peak RSS of
its workers (getrusage(RUSAGE_CHILDREN)), which must stay within 2 x the largest accepted
file + a constant over a run of small files.
"""

from __future__ import annotations

import io
import json
import os
import stat
import struct
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from medveil.errors import MedveilError
from medveil.run.archive import deidentify_archive, iter_inputs

from .helpers import POLICY, SECRET, demo_input

MB = 1 << 20
SLACK = 96 * MB  # allocator and interpreter slack over the baseline run

# Runs one archive conversion with one worker; prints the workers' peak RSS and summary.
DRIVER = r"""
import json, resource, sys
from medveil.errors import MedveilError
from medveil.policy.schema import Policy
from medveil.run.archive import deidentify_archive
src, out, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
reasons = {}
error = ""
try:
    s = deidentify_archive(src, out, secret=bytes(range(32)), workers=1,
                           max_file_size=limit or None,
                           on_quarantine=lambda n, r: reasons.__setitem__(n, r))
    summary = s.to_json()
except MedveilError as exc:
    summary, error = None, str(exc)
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"rss": rss, "summary": summary, "reasons": reasons, "error": error}))
"""


def run_measured(src: Path, out: Path, limit: int = 0) -> dict:
    """Convert src in a child process; its workers' peak RSS, summary, reasons and error."""
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, str(src), str(out), str(limit)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> int:
    """Peak worker RSS over a run of small files: the constant of the bound."""
    tmp = tmp_path_factory.mktemp("baseline")
    return int(run_measured(demo_input(tmp / "in", copies=20), tmp / "out")["rss"])


def _zip_with(path: Path, data: bytes, claimed: int | None = None) -> Path:
    """A one-member deflated zip; `claimed` overwrites the size both headers give."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("member.dcm", data)
    if claimed is not None:
        raw = bytearray(path.read_bytes())
        struct.pack_into("<I", raw, 22, claimed)  # local header: uncompressed size
        cd = raw.rfind(b"PK\x01\x02")
        struct.pack_into("<I", raw, cd + 24, claimed)  # central directory: the same
        path.write_bytes(bytes(raw))
    return path


def test_zip_member_claiming_3_75_gib_allocates_nothing_like_it(tmp_path, baseline) -> None:
    src = _zip_with(tmp_path / "lie.zip", b"\0" * 200_000, claimed=0xF0000000)
    assert src.stat().st_size < 16_000
    # The size limit is set far above the claim: only the bounded inflation protects.
    r = run_measured(src, tmp_path / "out", limit=8 << 30)
    assert r["summary"]["quarantined"] == 1
    (reason,) = r["reasons"].values()
    assert reason == "cannot read: damaged zip member (shorter than its size)"
    assert r["rss"] < baseline + SLACK, r["rss"]


def test_zip_bomb_is_refused_by_the_size_limit_before_inflating(tmp_path, baseline) -> None:
    src = _zip_with(tmp_path / "bomb.zip", b"\0" * (400 * MB))
    assert src.stat().st_size < 1 * MB
    r = run_measured(src, tmp_path / "out", limit=100 * MB)
    (reason,) = r["reasons"].values()
    assert reason.startswith("too large: 419.4 MB over the per-file limit of 104.9 MB")
    assert r["rss"] < baseline + SLACK, r["rss"]


def test_zip_bomb_under_a_small_claim_stops_at_the_claim(tmp_path, baseline) -> None:
    src = _zip_with(tmp_path / "bomb.zip", b"\0" * (400 * MB), claimed=1 * MB)
    r = run_measured(src, tmp_path / "out", limit=8 << 30)
    assert list(r["reasons"].values()) == ["cannot read: damaged zip member (longer than its size)"]
    assert r["rss"] < baseline + SLACK, r["rss"]


def test_tar_member_claiming_3_gib_is_cut_short_without_reading(tmp_path, baseline) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("member.dcm")
        info.size = 10_000
        tf.addfile(info, io.BytesIO(b"\0" * 10_000))
    raw = bytearray(buf.getvalue())
    raw[124:136] = b"%011o\0" % (3 << 30)  # the size field, octal
    raw[148:156] = b" " * 8
    raw[148:156] = b"%06o\0 " % sum(raw[:512])  # the header checksum again
    src = tmp_path / "lie.tar"
    src.write_bytes(bytes(raw))
    r = run_measured(src, tmp_path / "out", limit=8 << 30)
    assert "damaged or cut short" in r["error"]
    assert r["rss"] < baseline + SLACK, r["rss"]


def test_sparse_3_gib_file_is_refused_by_size_before_reading(tmp_path, baseline) -> None:
    src = tmp_path / "in"
    src.mkdir()
    with open(src / "sparse.dcm", "wb") as f:
        f.write(b"\0" * 128 + b"DICM")
        f.truncate(3 << 30)
    t0 = time.monotonic()
    r = run_measured(src, tmp_path / "out", limit=1 << 30)
    assert time.monotonic() - t0 < 30
    (reason,) = r["reasons"].values()
    assert reason.startswith("too large: 3221.2 MB over the per-file limit")
    assert r["rss"] < baseline + SLACK, r["rss"]


def test_peak_memory_is_within_twice_the_largest_accepted_file(tmp_path, baseline) -> None:
    """A real 64 MB image, deflated in a zip: accepted, cleaned, peak <= 2 x 64 MB + slack."""
    ds = pydicom.dcmread(next(demo_input(tmp_path / "d", copies=1).rglob("copy00000.dcm")))
    ds.Rows = ds.Columns = 4096
    ds.NumberOfFrames = 2
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    pixels = (np.arange(2 * 4096 * 4096, dtype=np.uint16) % 4096).tobytes()
    ds.PixelData = pixels
    body = io.BytesIO()
    ds.save_as(body, enforce_file_format=True)
    size = len(body.getvalue())
    src = _zip_with(tmp_path / "big.zip", body.getvalue())
    r = run_measured(src, tmp_path / "out", limit=1 << 30)
    assert r["summary"]["written"] == 1, r["reasons"]
    assert r["rss"] <= baseline + 2 * size + SLACK, (r["rss"] - baseline) / size


# ---------------------------------------------------------------------------- special files
def test_fifo_and_device_in_the_input_are_skipped_within_seconds(tmp_path) -> None:
    src = demo_input(tmp_path / "in", copies=2)
    os.mkfifo(src / "pipe.dcm")  # nobody writes: opening it for reading would block
    has_device = True
    try:
        os.mknod(src / "null.dcm", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, OSError):
        has_device = False  # not root, or a container without CAP_MKNOD
    t0 = time.monotonic()
    summary = deidentify_archive(src, tmp_path / "out", policy=POLICY, secret=SECRET, workers=2)
    assert time.monotonic() - t0 < 20
    assert summary.skipped_reasons["not a regular file (FIFO)"] == 1
    if has_device:
        assert summary.skipped_reasons["not a regular file (character device)"] == 1
    assert summary.written == 16 and summary.quarantined == 0
    assert summary.files_in == 17 + 1 + has_device
    if not has_device:
        pytest.skip("device node not made (needs root with CAP_MKNOD); the FIFO part passed")


def test_fifo_given_as_the_input_is_an_error_not_a_hang(tmp_path) -> None:
    fifo = tmp_path / "in.zip"
    os.mkfifo(fifo)
    with pytest.raises(MedveilError, match="is a FIFO"):
        list(iter_inputs(fifo))


def test_tar_links_and_devices_are_counted_as_skipped(tmp_path) -> None:
    src = demo_input(tmp_path / "d", copies=1)
    path = tmp_path / "in.tar"
    with tarfile.open(path, "w") as tf:
        tf.add(src / "copies" / "copy00000.dcm", arcname="a.dcm")
        for name, kind in (("s.dcm", tarfile.SYMTYPE), ("h.dcm", tarfile.LNKTYPE)):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, "a.dcm"
            tf.addfile(info)
        dev = tarfile.TarInfo("null.dcm")
        dev.type, dev.devmajor, dev.devminor = tarfile.CHRTYPE, 1, 3
        tf.addfile(dev)
    summary = deidentify_archive(path, tmp_path / "out", policy=POLICY, secret=SECRET, workers=1)
    assert summary.files_in == 4 and summary.written == 1
    assert dict(summary.skipped_reasons) == {
        "tar symbolic link member": 1,
        "tar hard link member": 1,
        "tar device member": 1,
    }
    recorded = json.loads((tmp_path / "out" / ".medveil" / "summary.json").read_text())
    assert recorded["files_in"] == 4 and recorded["skipped"] == 3


def test_a_file_over_its_time_limit_is_quarantined_timed_out(tmp_path, monkeypatch) -> None:
    """A file that keeps its worker busy is cut at its limit; the worker goes on."""
    from medveil.engine import instance
    from medveil.run import archive

    real = instance.clean_instance

    def slow_on_one(engine, raw, name="input", **kw):  # type: ignore[no-untyped-def]
        # Stands in for an input the engine spins on (DICM + 2 GiB of zeros did, before
        # the engine learnt to stop early): pure Python busy work, like a parser's loop.
        if name.endswith("slow.dcm"):
            while True:
                sum(range(1000))
        return real(engine, raw, name, **kw)

    # Workers are forked: they inherit both patches.
    monkeypatch.setattr(instance, "clean_instance", slow_on_one)
    monkeypatch.setattr(archive, "TIMEOUT_BYTES_PER_SECOND", 1e6)
    src = demo_input(tmp_path / "in", copies=3)
    (src / "slow.dcm").write_bytes((src / "copies" / "copy00000.dcm").read_bytes())
    reasons: dict[str, str] = {}
    t0 = time.monotonic()
    summary = deidentify_archive(
        src,
        tmp_path / "out",
        policy=POLICY,
        secret=SECRET,
        workers=1,
        file_timeout=0.5,
        on_quarantine=lambda n, r: reasons.__setitem__(n, r),
    )
    assert time.monotonic() - t0 < 20
    size = (src / "slow.dcm").stat().st_size
    limit = 0.5 + size / 1e6
    assert reasons == {
        "slow.dcm": f"timed out: over {limit:.1f} s for {size / 1e6:.1f} MB (--file-timeout)"
    }
    assert summary.written == 17  # the worker went on with the next files


def test_a_file_spinning_in_native_code_is_quarantined_and_its_worker_replaced(
    tmp_path, monkeypatch
) -> None:
    """Native code never sees the Python timer: the CPU backstop ends the worker, the
    parent runs the files that were in flight one at a time and quarantines the one that
    does it again; every other file is written."""
    import hashlib

    from medveil.engine import instance
    from medveil.run import archive

    real = instance.clean_instance

    def spin_on_one(engine, raw, name="input", **kw):  # type: ignore[no-untyped-def]
        if name.endswith("spin.dcm"):
            # A C loop that neither returns for minutes nor checks for signals.
            hashlib.pbkdf2_hmac("sha256", b"x", b"y", 2**31 - 1)
        return real(engine, raw, name, **kw)

    monkeypatch.setattr(instance, "clean_instance", spin_on_one)
    monkeypatch.setattr(archive, "TIMEOUT_BYTES_PER_SECOND", 1e12)
    src = demo_input(tmp_path / "in", copies=40)
    (src / "copies" / "spin.dcm").write_bytes((src / "copies" / "copy00000.dcm").read_bytes())
    reasons: dict[str, str] = {}
    t0 = time.monotonic()
    summary = deidentify_archive(
        src,
        tmp_path / "out",
        policy=POLICY,
        secret=SECRET,
        workers=2,
        file_timeout=0.3,
        on_quarantine=lambda n, r: reasons.__setitem__(n, r),
    )
    assert time.monotonic() - t0 < 60
    assert reasons == {
        "copies/spin.dcm": "timed out: its worker was ended after 1.6 s of CPU (--file-timeout)"
    }
    assert summary.written == 54 and summary.failed == 0 and summary.retried >= 1
    assert summary.exit_code == 1

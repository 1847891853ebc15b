"""Zip and tar inputs: workers read the members themselves; damaged members are quarantined."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from medveil.errors import MedveilError
from medveil.run import archive
from medveil.run.archive import Item, deidentify_archive, iter_inputs
from medveil.run.demo import write_demo_archive

from .test_archive import POLICY, SECRET, run_with_reasons, tree


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("demo-in")
    write_demo_archive(folder)
    return folder


@pytest.fixture(scope="module")
def reference(demo, tmp_path_factory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("ref") / "out"
    deidentify_archive(demo, out, policy=POLICY, secret=SECRET, workers=1)
    return tree(out)


def _files(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.rglob("*")) if p.is_file()]


def _zip(demo: Path, path: Path, method: int) -> Path:
    with zipfile.ZipFile(path, "w", compression=method) as zf:
        for p in _files(demo):
            zf.write(p, p.relative_to(demo).as_posix())
    return path


def _tar(demo: Path, path: Path, mode: str) -> Path:
    with tarfile.open(path, mode) as tf:
        tf.add(demo, arcname=".")
    return path


@pytest.mark.parametrize(
    "make",
    [
        lambda d, t: _zip(d, t / "in.zip", zipfile.ZIP_STORED),
        lambda d, t: _zip(d, t / "in.zip", zipfile.ZIP_DEFLATED),
        lambda d, t: _zip(d, t / "in.zip", zipfile.ZIP_BZIP2),
        lambda d, t: _tar(d, t / "in.tar", "w"),
        lambda d, t: _tar(d, t / "in.tar.gz", "w:gz"),
        lambda d, t: _tar(d, t / "in.tar.bz2", "w:bz2"),
        lambda d, t: _tar(d, t / "in.tar.xz", "w:xz"),
    ],
    ids=["zip-stored", "zip-deflated", "zip-bzip2", "tar", "tar.gz", "tar.bz2", "tar.xz"],
)
def test_every_container_gives_the_folder_output(demo, reference, tmp_path, make) -> None:
    src = make(demo, tmp_path)
    out = tmp_path / "out"
    summary = deidentify_archive(src, out, policy=POLICY, secret=SECRET, workers=2)
    assert (summary.written, summary.skipped, summary.quarantined) == (14, 1, 0)
    assert tree(out) == reference


def test_members_are_carried_as_references_not_bytes(demo, tmp_path) -> None:
    # The parent lists; the workers read. A compressed tar's members are spooled to files.
    plain = list(iter_inputs(_tar(demo, tmp_path / "a.tar", "w")))
    zipped = list(iter_inputs(_zip(demo, tmp_path / "a.zip", zipfile.ZIP_DEFLATED)))
    gz = list(iter_inputs(_tar(demo, tmp_path / "a.tar.gz", "w:gz")))
    assert len(plain) == len(zipped) == len(gz) == 15
    assert all(i.data is None and i.size >= 0 and i.path for i in plain)
    assert all(i.data is None and i.member and i.path for i in zipped)
    assert all(i.data is None and i.size >= 0 and i.path for i in gz)
    # A member's byte range is exactly the member.
    with tarfile.open(tmp_path / "a.tar") as tf:
        for item in plain:
            member = tf.getmember(item.name.split("!", 1)[1])
            assert bytes(archive._read(item)) == tf.extractfile(member).read()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2], ids=str
)
def test_damaged_zip_member_is_quarantined_and_the_run_goes_on(demo, tmp_path, method) -> None:
    src = _zip(demo, tmp_path / "in.zip", method)
    with zipfile.ZipFile(src) as zf:
        victim = next(i for i in zf.infolist() if i.filename.endswith(".dcm"))
    data = bytearray(src.read_bytes())
    at = victim.header_offset + 30 + len(victim.filename.encode()) + victim.compress_size // 2
    data[at] ^= 0xFF  # inside the member's data: only its CRC (or its inflation) can tell
    src.write_bytes(bytes(data))
    summary, reasons = run_with_reasons(src, tmp_path / "out", workers=2)
    assert (summary.written, summary.quarantined) == (13, 1)
    assert list(reasons) == [f"in.zip!{victim.filename}"]
    assert reasons[f"in.zip!{victim.filename}"].startswith("cannot read: damaged zip member (")
    records = (tmp_path / "out" / ".medveil" / "quarantine.jsonl").read_text()
    assert victim.filename not in records


@settings(max_examples=25, deadline=None)
@given(
    members=st.lists(
        st.tuples(
            st.binary(max_size=3000),
            st.integers(0, 80_000),
            st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]),
            st.booleans(),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_zip_members_read_by_the_worker_match_zipfile(members) -> None:
    """Stored and deflated members, empty to 80 kB, some with ZIP64 headers, as zipfile reads."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.zip"
        with zipfile.ZipFile(path, "w") as zf:
            for i, (head, pad, method, zip64) in enumerate(members):
                body = head + bytes(range(256)) * (pad // 256)
                info = zipfile.ZipInfo(f"m{i:02d}.bin")
                info.compress_type = method
                with zf.open(info, "w", force_zip64=zip64) as w:
                    w.write(body)
        items = list(iter_inputs(path))
        assert all(i.packed is not None for i in items)
        with zipfile.ZipFile(path) as zf:
            for item in items:
                assert bytes(archive._read(item)) == zf.read(item.member)  # type: ignore[arg-type]


def test_cut_plain_tar_finishes_what_it_lists_then_says_so(demo, tmp_path) -> None:
    src = _tar(demo, tmp_path / "in.tar", "w")
    items = list(iter_inputs(src))
    last = max((i for i in items if i.size > 0), key=lambda i: i.offset)
    src.write_bytes(src.read_bytes()[: last.offset + last.size // 2])
    out = tmp_path / "out"
    with pytest.raises(MedveilError, match="damaged or cut short"):
        run_with_reasons(src, out, workers=1)
    # Every member before the cut is written, the cut one quarantined, all recorded.
    summary = json.loads((out / ".medveil" / "summary.json").read_text())
    db = sqlite3.connect(out / ".medveil" / "catalog.sqlite")
    reasons = db.execute("SELECT reason FROM inputs WHERE status = 'quarantined'").fetchall()
    assert reasons == [("cannot read: archive member is cut short",)]
    assert summary["files_in"] == len(items) and summary["interrupted"]
    assert summary["written"] + summary["skipped"] + summary["quarantined"] == len(items)
    assert len(list(out.rglob("*.dcm"))) == summary["written"]


@pytest.mark.parametrize("kind", ["gz", "bz2", "xz"])
def test_cut_compressed_tar_stops_with_a_clear_error(demo, tmp_path, kind) -> None:
    src = _tar(demo, tmp_path / f"in.tar.{kind}", f"w:{kind}")
    src.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    # Cut early enough, a bzip2 stream cannot even be opened; later, a member ends short.
    with pytest.raises(MedveilError, match="archive is damaged or cut short"):
        deidentify_archive(src, tmp_path / "out", policy=POLICY, secret=SECRET, workers=1)
    # The command line says so and exits 2; the records of what was done are written.
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET.hex())
    secret_file.chmod(0o600)
    out = tmp_path / "cli"
    cli = [sys.executable, "-m", "medveil", "deid", str(src), str(out), "--quiet"]
    proc = subprocess.run(
        [*cli, "--secret-file", str(secret_file)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "damaged or cut short" in proc.stderr and "Traceback" not in proc.stderr
    assert (out / ".medveil" / "summary.json").exists()


def test_not_a_zip_member_reader_error_names_no_member() -> None:
    with pytest.raises(OSError, match="not a readable zip archive"):
        archive._read(Item(name="x", path=__file__, member="secret-name.dcm"))


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA], ids=str)
@pytest.mark.parametrize("size", [0, 1, 5000, 3_000_000])
def test_bzip2_and_lzma_members_read_by_the_worker_match_zipfile(tmp_path, method, size) -> None:
    """The bounded bzip2/LZMA readers (1 MB of output at a time) give zipfile's bytes."""
    body = (bytes(range(256)) * (size // 256 + 1))[:size]
    if size > 1000:
        body = body[:500] + bytes(size - 1000) + body[-500:]  # long runs: high ratios
    path = tmp_path / "m.zip"
    with zipfile.ZipFile(path, "w", compression=method) as zf:
        zf.writestr("a.bin", body)
        zf.writestr("b.bin", body[::-1])
    items = list(iter_inputs(path))
    assert all(i.packed is not None and archive._direct(i.packed) for i in items)
    with zipfile.ZipFile(path) as zf:
        for item in items:
            assert bytes(archive._read(item)) == zf.read(item.member)  # type: ignore[arg-type]

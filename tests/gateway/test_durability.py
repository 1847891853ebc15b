"""Group commit: what is acknowledged is on disk under its final name, and nothing else."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

pytest.importorskip("pynetdicom")

import medveil.net.gateway as gateway
from medveil.net.gateway import GroupCommit, write_temporary


def test_concurrent_commits_are_grouped_and_all_land(tmp_path: Path, monkeypatch):
    if gateway._SYNCFS is None:
        pytest.skip("no syncfs on this platform: each file is fsynced on its own")
    release = threading.Event()
    calls: list[int] = []
    real = gateway.sync_filesystem

    def slow_first_sync(root: Path) -> None:
        calls.append(1)
        if len(calls) == 1:
            release.wait(10)  # the first batch is still flushing while the rest arrive
        real(root)

    monkeypatch.setattr(gateway, "sync_filesystem", slow_first_sync)
    gc = GroupCommit(tmp_path)
    finals = [tmp_path / f"d{i % 3}" / f"f{i}.dcm" for i in range(10)]
    tmps = [write_temporary(p, f"data {i}".encode()) for i, p in enumerate(finals)]
    errors: list[BaseException] = []

    def commit(i: int) -> None:
        try:
            gc.commit(tmps[i], finals[i])
        except BaseException as exc:
            errors.append(exc)

    first = threading.Thread(target=commit, args=(0,))
    first.start()
    while not calls:
        threading.Event().wait(0.01)
    rest = [threading.Thread(target=commit, args=(i,)) for i in range(1, 10)]
    for t in rest:
        t.start()
    while len(gc._queue) < 9:
        threading.Event().wait(0.01)
    assert not any(p.exists() for p in finals)  # nothing visible before its flush
    release.set()
    for t in [first, *rest]:
        t.join(10)
    gc.close()
    assert not errors
    assert gc.batches == 2
    assert [p.read_bytes() for p in finals] == [f"data {i}".encode() for i in range(10)]
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_failed_commit_raises_and_the_next_one_still_works(tmp_path: Path):
    gc = GroupCommit(tmp_path)
    with pytest.raises(FileNotFoundError):
        gc.commit(tmp_path / ".missing.tmp", tmp_path / "missing.dcm")
    tmp = write_temporary(tmp_path / "ok.dcm", b"ok")
    gc.commit(tmp, tmp_path / "ok.dcm")
    gc.close()
    assert (tmp_path / "ok.dcm").read_bytes() == b"ok"
    with pytest.raises(OSError):
        gc.commit(tmp, tmp_path / "late.dcm")


def test_temporaries_are_unique_per_write(tmp_path: Path):
    a = write_temporary(tmp_path / "x.dcm", b"1")
    b = write_temporary(tmp_path / "x.dcm", b"2")
    assert a != b and a.name.startswith(".x.dcm.") and a.read_bytes() == b"1"
    assert not (tmp_path / "x.dcm").exists()

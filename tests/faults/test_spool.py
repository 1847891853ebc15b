"""Compressed tar members are spooled to temporary files, never left behind.

The parent copies each member of a .tar.gz to a hidden ``.spool-*.tmp`` file and hands
the worker its path (the bytes never cross the task pipe); the file goes when the run is
done with its input, and a crashed run's spool is removed by the next one.
"""

from __future__ import annotations

import gc
import os
import tarfile
import tempfile
from pathlib import Path

import pytest
from medveil.errors import MedveilError
from medveil.run import archive
from medveil.run.archive import deidentify_archive, iter_inputs

from .helpers import POLICY, SECRET, demo_input, tree


def _tgz(folder: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w:gz") as tf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                tf.add(p, p.relative_to(folder).as_posix())
    return dest


def _spools(folder: Path) -> list[Path]:
    return sorted(folder.rglob(".spool-*.tmp"))


def test_spooled_members_read_back_exactly_and_vanish(tmp_path) -> None:
    src = _tgz(demo_input(tmp_path / "in", copies=3), tmp_path / "in.tar.gz")
    spool = tmp_path / "spool"
    items = list(iter_inputs(src, spool=spool))
    assert len(items) == 18
    assert all(i.data is None and i.path and i.size >= 0 for i in items)
    assert len(_spools(spool)) == 18
    with tarfile.open(src) as tf:
        for item in items:
            member = tf.extractfile(item.name.split("!", 1)[1])
            assert member is not None
            assert bytes(archive._read(item)) == member.read()
    del items, item
    gc.collect()
    assert _spools(spool) == []


def test_private_spool_folder_goes_with_its_last_member(tmp_path) -> None:
    src = _tgz(demo_input(tmp_path / "in", copies=1), tmp_path / "in.tar.gz")
    items = list(iter_inputs(src))
    folder = Path(items[0].path or "").parent
    assert folder.name.startswith(f"medveil-spool-{os.getpid()}-")
    assert folder.is_dir()
    del items
    gc.collect()
    assert not folder.exists()


def test_stale_spool_of_a_dead_run_is_removed(tmp_path) -> None:
    # A pid no process has (above the kernel's pid_max).
    stale = Path(tempfile.gettempdir()) / "medveil-spool-99999999-test"
    stale.mkdir(exist_ok=True)
    (stale / ".spool-x.tmp").write_bytes(b"left by kill -9")
    src = _tgz(demo_input(tmp_path / "in", copies=1), tmp_path / "in.tar.gz")
    items = list(iter_inputs(src))
    assert items
    assert not stale.exists()


def test_tar_gz_run_leaves_no_spool_and_matches_the_folder_run(tmp_path) -> None:
    folder = demo_input(tmp_path / "in", copies=4)
    src = _tgz(folder, tmp_path / "in.tar.gz")
    deidentify_archive(src, tmp_path / "out", policy=POLICY, secret=SECRET, workers=2)
    deidentify_archive(folder, tmp_path / "ref", policy=POLICY, secret=SECRET, workers=2)
    assert tree(tmp_path / "out") == tree(tmp_path / "ref")
    assert _spools(tmp_path / "out") == []
    gc.collect()
    assert not list(Path(tempfile.gettempdir()).glob(f"medveil-spool-{os.getpid()}-*"))


def test_resume_removes_a_crashed_runs_spool(tmp_path) -> None:
    src = _tgz(demo_input(tmp_path / "in", copies=2), tmp_path / "in.tar.gz")
    out = tmp_path / "out"
    deidentify_archive(src, out, policy=POLICY, secret=SECRET, workers=1)
    left = out / ".medveil" / ".spool-abc.tmp"  # what kill -9 leaves in a given spool
    left.write_bytes(b"x" * 100)
    deidentify_archive(src, out, policy=POLICY, secret=SECRET, workers=1, resume=True)
    assert not left.exists()


def test_a_spool_that_cannot_be_written_stops_the_listing_clearly(tmp_path) -> None:
    src = _tgz(demo_input(tmp_path / "in", copies=1), tmp_path / "in.tar.gz")
    spool = tmp_path / "spool"
    spool.write_text("a file where the spool folder should be")
    with pytest.raises(MedveilError, match="cannot spool a compressed tar member"):
        list(iter_inputs(src, spool=spool))

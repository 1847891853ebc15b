"""A durable run's outputs: staged by the workers, flushed and placed by the parent."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import sqlite3
from pathlib import Path

from medveil.run import archive
from medveil.run.archive import (
    _COLUMNS,
    Record,
    _place_tasks,
    _staged_record,
    _TaskBatch,
    deidentify_archive,
)
from medveil.run.demo import write_copies, write_demo_archive
from medveil.run.outputs import MAX_VARIANTS, TOO_MANY_VARIANTS

from .test_archive import POLICY, SECRET, tree


def _row(path: str, data: bytes) -> tuple[object, ...]:
    """A catalog row naming path, with data's size and SHA-256."""
    values: dict[str, object] = {
        "path": path,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    return tuple(values.get(name) for name in _COLUMNS)


def _stage(root: Path, relpath: str, data: bytes) -> Record:
    """What a worker task returns for one file it staged under relpath (a task of its own)."""
    batch = _TaskBatch(root)
    kind, staged = batch.add_variant(root / relpath, [data], hashlib.sha256(data).hexdigest())
    assert kind == "new"
    return _staged_record(Record("written", row=_row(relpath, data)), staged, batch)


def _hidden(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob(".*.tmp"))


def test_two_tasks_of_one_worker_stage_one_name_apart(tmp_path: Path) -> None:
    # The parent places a task's files while the worker writes the next task's: the same
    # output name in both must not share a temporary (the second would overwrite it).
    first = _stage(tmp_path, "p/s/x.dcm", b"first")
    second = _stage(tmp_path, "p/s/x.dcm", b"second")
    assert first.staged is not None and second.staged is not None
    assert first.staged[1] != second.staged[1]
    assert len(_hidden(tmp_path)) == 2
    placed = _place_tasks(tmp_path, [[first], [second]])
    assert [[r.path for r in task] for task in placed if not isinstance(task, str)] == [
        ["p/s/x.dcm"],
        ["p/s/x~2.dcm"],
    ]
    assert (tmp_path / "p/s/x.dcm").read_bytes() == b"first"
    assert (tmp_path / "p/s/x~2.dcm").read_bytes() == b"second"
    assert all(r.staged is None for task in placed for r in task if isinstance(r, Record))
    assert _hidden(tmp_path) == []


def test_identical_output_placed_twice_is_one_file(tmp_path: Path) -> None:
    placed = _place_tasks(
        tmp_path, [[_stage(tmp_path, "a/x.dcm", b"same")], [_stage(tmp_path, "a/x.dcm", b"same")]]
    )
    assert [task[0].path for task in placed if not isinstance(task, str)] == ["a/x.dcm"] * 2
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["x.dcm"]


def test_a_name_with_every_variant_taken_is_refused(tmp_path: Path) -> None:
    tasks = [[_stage(tmp_path, "a/x.dcm", b"%d" % i)] for i in range(MAX_VARIANTS + 1)]
    placed = _place_tasks(tmp_path, tasks)
    last = placed[-1]
    assert not isinstance(last, str)
    assert (last[0].status, last[0].reason) == ("quarantined", TOO_MANY_VARIANTS)
    assert len(list((tmp_path / "a").iterdir())) == MAX_VARIANTS
    assert _hidden(tmp_path) == []


def test_records_that_are_not_staged_pass_through(tmp_path: Path) -> None:
    skipped = Record("skipped", "not DICOM", 3)
    staged = _stage(tmp_path, "a/x.dcm", b"data")
    (task,) = _place_tasks(tmp_path, [[skipped, staged]])
    assert not isinstance(task, str)
    assert task[0] == skipped and task[1].path == "a/x.dcm"


def test_a_failed_flush_leaves_nothing_and_says_why(tmp_path: Path, monkeypatch) -> None:
    def full(self: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(archive.BatchWriter, "flush", full)
    tasks = [[_stage(tmp_path, "a/x.dcm", b"x")], [_stage(tmp_path, "a/y.dcm", b"y")]]
    placed = _place_tasks(tmp_path, tasks)
    assert placed == ["No space left on device (ENOSPC)"] * 2
    assert not (tmp_path / "a/x.dcm").exists() and not (tmp_path / "a/y.dcm").exists()
    assert _hidden(tmp_path) == []


def _catalog(out: Path) -> list[tuple[object, ...]]:
    db = sqlite3.connect(out / ".medveil" / "catalog.sqlite")
    try:
        return sorted(db.execute(f"SELECT {', '.join(_COLUMNS)} FROM instances"))
    finally:
        db.close()


def test_a_flush_failure_in_the_parent_retries_to_the_same_release(
    tmp_path: Path, monkeypatch
) -> None:
    src = tmp_path / "in"
    files = write_demo_archive(src / "demo")
    ct = next(p for p in files if p.suffix == ".dcm" and "ct" in p.parts[-2].lower())
    write_copies(src / "copies", ct, 40)
    ref = tmp_path / "ref"
    deidentify_archive(src, ref, policy=POLICY, secret=SECRET, workers=2, durable=False)
    calls = []
    flush = archive.BatchWriter.flush

    def flaky(self: archive.BatchWriter) -> None:
        calls.append(1)
        if len(calls) == 2:  # the second flush of the run fails, as a full disk would
            raise OSError(errno.EIO, "Input/output error")
        flush(self)

    monkeypatch.setattr(archive.BatchWriter, "flush", flaky)
    out = tmp_path / "out"
    summary = deidentify_archive(src, out, policy=POLICY, secret=SECRET, workers=2)
    assert summary.retried >= 1 and summary.retry_reasons["Input/output error (EIO)"] >= 1
    assert summary.failed == 0 and summary.written == len(tree(ref))
    assert tree(out) == tree(ref)
    assert _catalog(out) == _catalog(ref)
    assert _hidden(out) == []


def test_an_interrupt_while_placing_leaves_no_temporaries_and_resumes(
    tmp_path: Path, monkeypatch
) -> None:
    src = tmp_path / "in"
    files = write_demo_archive(src / "demo")
    ct = next(p for p in files if p.suffix == ".dcm" and "ct" in p.parts[-2].lower())
    write_copies(src / "copies", ct, 60)
    ref = tmp_path / "ref"
    deidentify_archive(src, ref, policy=POLICY, secret=SECRET, workers=2)
    calls = []
    place = archive._place_tasks

    def interrupted(out: Path, tasks: list[list[Record]]) -> list[list[Record] | str]:
        calls.append(1)
        if len(calls) == 2:  # Ctrl-C with staged outputs not yet placed
            raise KeyboardInterrupt
        return place(out, tasks)

    monkeypatch.setattr(archive, "_place_tasks", interrupted)
    out = tmp_path / "out"
    first = deidentify_archive(src, out, policy=POLICY, secret=SECRET, workers=2)
    assert first.interrupted and first.written < len(tree(ref))
    assert _hidden(out) == []
    monkeypatch.setattr(archive, "_place_tasks", place)
    second = deidentify_archive(src, out, policy=POLICY, secret=SECRET, workers=2, resume=True)
    assert not second.interrupted and second.failed == 0
    assert tree(out) == tree(ref)
    assert _catalog(out) == _catalog(ref)


def test_a_stop_while_recording_counts_what_the_records_hold(tmp_path: Path, monkeypatch) -> None:
    # SIGTERM (as Ctrl-C) while a task's outcomes are being recorded: the run stops after
    # the task is recorded and counted, so its summary and its records agree, and a
    # resumed run skips exactly the inputs the summary counted.
    src = tmp_path / "in"
    files = write_demo_archive(src / "demo")
    ct = next(p for p in files if p.suffix == ".dcm" and "ct" in p.parts[-2].lower())
    write_copies(src / "copies", ct, 60)
    record = archive.RunRecords.record
    calls = []

    def stopped(self: archive.RunRecords, batch: list[tuple[str, Record]]) -> None:
        record(self, batch)
        calls.append(len(batch))
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # handled in this thread, right now

    monkeypatch.setattr(archive.RunRecords, "record", stopped)
    out = tmp_path / "out"
    first = deidentify_archive(src, out, policy=POLICY, secret=SECRET, workers=1)
    assert first.interrupted
    db = sqlite3.connect(out / ".medveil" / "catalog.sqlite")
    try:
        (recorded,) = db.execute("SELECT count(*) FROM inputs").fetchone()
    finally:
        db.close()
    assert first.files_in == recorded == sum(calls)
    monkeypatch.setattr(archive.RunRecords, "record", record)
    second = deidentify_archive(src, out, policy=POLICY, secret=SECRET, workers=1, resume=True)
    assert second.resumed == first.files_in and not second.interrupted

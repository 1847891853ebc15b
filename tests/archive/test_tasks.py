"""How the run cuts its inputs into worker tasks, opens its records and ends its pool."""

from __future__ import annotations

import multiprocessing
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from medveil.errors import MedveilError
from medveil.policy.keys import Keyed
from medveil.run import archive
from medveil.run.archive import (
    CHUNK_FILES,
    TAIL_FILES,
    Item,
    RunRecords,
    _Background,
    _chunks,
    deidentify_archive,
)
from pydicom.data import get_testdata_file


def _listing(n: int, pulled: list[int] | None = None, error_after: int | None = None):
    """n inputs as the run lists them; counts how many were pulled; may fail after some."""
    for i in range(n):
        if error_after is not None and i == error_after:
            raise MedveilError("the archive is damaged")
        if pulled is not None:
            pulled.append(i)
        yield f"k{i}", Item(name=f"f{i}", path=f"/in/f{i}")


def _sizes(n: int, workers: int, max_items: int = CHUNK_FILES) -> list[int]:
    return [len(c) for c in _chunks(_listing(n), max_items, 64 << 20, workers)]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 300), st.integers(1, 4), st.integers(1, 20))
def test_tasks_keep_every_input_once_in_listing_order(n: int, workers: int, size: int) -> None:
    tasks = list(_chunks(_listing(n), size, 64 << 20, workers))
    assert [key for task in tasks for key, _item in task] == [f"k{i}" for i in range(n)]
    assert all(0 < len(task) <= size for task in tasks)


def test_last_tasks_shrink_so_two_workers_finish_together() -> None:
    sizes = _sizes(600, workers=2)
    assert sum(sizes) == 600
    # Full tasks while the listing goes on; then each takes half of what is left.
    assert sizes == [CHUNK_FILES] * 36 + [12, 6, 6]
    assert _sizes(610, workers=2)[-4:] == [16, 9, 5, 4]


def test_last_tasks_never_leave_a_task_of_a_file_or_two() -> None:
    for n in range(1, 200):
        sizes = _sizes(n, workers=2)
        assert sum(sizes) == n
        assert min(sizes) >= min(n, TAIL_FILES), (n, sizes)


def test_one_worker_keeps_full_tasks() -> None:
    # No one to finish with: shrinking would only add flushes.
    assert _sizes(600, workers=1) == [CHUNK_FILES] * 37 + [8]
    assert _sizes(10, workers=1) == [10]


def test_a_small_run_is_shared_by_the_workers() -> None:
    # Ten files were one task (one worker busy, the other idle).
    assert _sizes(10, workers=2) == [5, 5]


def test_the_first_task_waits_for_few_more_inputs_than_it_holds() -> None:
    # A compressed tar spools each input it lists: the first task must not wait for many.
    pulled: list[int] = []
    tasks = _chunks(_listing(600, pulled), CHUNK_FILES, 64 << 20, 2)
    first = next(tasks)
    assert len(first) == CHUNK_FILES and len(pulled) == CHUNK_FILES + TAIL_FILES
    for _ in range(10):
        next(tasks)
    # Then it reads ahead a bounded number: one task per worker beyond the next one.
    assert len(pulled) - 11 * CHUNK_FILES <= 2 * CHUNK_FILES


def test_listing_error_comes_after_every_input_listed_before_it() -> None:
    tasks = _chunks(_listing(100, error_after=40), CHUNK_FILES, 64 << 20, 2)
    got: list[str] = []
    with pytest.raises(MedveilError, match="damaged"):
        for task in tasks:
            got += [key for key, _item in task]
    assert got == [f"k{i}" for i in range(40)]


def test_tasks_stay_under_the_byte_bound() -> None:
    def with_data() -> Iterator[tuple[str, Item]]:
        for i in range(20):
            yield f"k{i}", Item(name=f"f{i}", data=bytes(400))

    tasks = list(_chunks(with_data(), CHUNK_FILES, 1000, 2))
    assert [len(t) for t in tasks][:3] == [3, 3, 3]
    assert sum(len(t) for t in tasks) == 20


def test_background_returns_or_raises_in_the_caller() -> None:
    assert _Background(lambda: 42).result() == 42

    def fail() -> int:
        raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        _Background(fail).result()


def test_records_opened_in_a_thread_work_in_the_run_thread(tmp_path) -> None:
    records = _Background(lambda: RunRecords(tmp_path, Keyed(b"s" * 32))).result()
    assert records.done_keys() == set() and records.released() == 0
    records.close()
    # The schema was committed as one transaction: every table is there for the next run.
    db = sqlite3.connect(tmp_path / ".medveil" / "catalog.sqlite")
    names = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"instances", "refs", "frames", "inputs", "rejections"} <= names
    db.close()


def test_schema_is_one_commit(tmp_path, monkeypatch) -> None:
    statements: list[str] = []
    connect = sqlite3.connect

    def traced(*args, **kwargs):  # type: ignore[no-untyped-def]
        db = connect(*args, **kwargs)
        db.set_trace_callback(statements.append)
        return db

    monkeypatch.setattr(archive.sqlite3, "connect", traced)
    RunRecords(tmp_path, Keyed(b"s" * 32)).close()
    creates = [i for i, s in enumerate(statements) if s.startswith("CREATE")]
    begin = statements.index("BEGIN")
    commit = statements.index("COMMIT")
    assert begin < min(creates) and max(creates) < commit
    assert statements.count("COMMIT") == 1


def test_the_run_returns_with_its_workers_gone_and_its_records_written(tmp_path) -> None:
    # The workers end while the records are finished: the run still returns only once
    # every worker is gone (they hold the output's lock) and every record is written.
    src = tmp_path / "in"
    src.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm", "rtdose.dcm", "JPEG2000.dcm"):
        shutil.copy(get_testdata_file(name, download=False), src / name)
    out = tmp_path / "out"
    summary = deidentify_archive(src, out, secret=bytes(range(32)), workers=2, durable=False)
    assert multiprocessing.active_children() == []
    assert summary.files_in == 4 and summary.written + summary.quarantined == 4
    records = out / ".medveil"
    assert (records / "summary.json").is_file() and (records / "quarantine.jsonl").is_file()
    db = sqlite3.connect(records / "catalog.sqlite")
    (rows,) = db.execute("SELECT COUNT(*) FROM instances").fetchone()
    db.close()
    assert rows == summary.written
    released = [p for p in Path(out).rglob("*.dcm") if ".medveil" not in p.parts]
    assert len(released) == summary.written

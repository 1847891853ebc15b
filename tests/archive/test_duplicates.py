"""Outputs that share a SOP Instance UID: variant names, placing them, ordering them.

Issue 19 item 6, as decided: different content under one UID is released twice, as
``<uid>.dcm`` and ``<uid>~2.dcm`` (more: ``~3``...), in the order of the input paths, each
naming the other in the catalog; identical content is written once. These tests hold the
pieces in :mod:`medveil.run.outputs` to that: names, exclusive placing (two workers at
once included), the batch, and the final ordering of files and catalog rows together.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from medveil.run.outputs import (
    MAX_VARIANTS,
    SHARES_COLUMN,
    ExclusiveBatch,
    base_relpath,
    place_variant,
    settle_variants,
    variant_path,
)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tmp(folder: Path, name: str, data: bytes) -> Path:
    p = folder / f".{name}.tmp"
    p.write_bytes(data)
    return p


_NAME = st.text("0123456789.", min_size=1, max_size=40).filter(lambda s: s.strip(".") == s)


@given(name=_NAME, n=st.integers(1, MAX_VARIANTS))
def test_variant_names_round_trip(name: str, n: int) -> None:
    rel = f"P/S/R/{name}.dcm"
    got = variant_path(Path(rel), n).as_posix()
    assert (got == rel) == (n == 1)
    assert base_relpath(got) == rel
    if n > 1:
        assert got == f"P/S/R/{name}~{n}.dcm"


def test_base_relpath_leaves_other_names_alone() -> None:
    assert base_relpath("a/b/1.2.3.dcm") == "a/b/1.2.3.dcm"
    assert base_relpath("a/b/1.2.3~1.dcm") == "a/b/1.2.3~1.dcm"  # ~1 is never written
    assert base_relpath("a/b/1.2.3~x.dcm") == "a/b/1.2.3~x.dcm"
    assert base_relpath("a/b/~2.dcm") == "a/b/~2.dcm"
    assert base_relpath("a/b/1.2~12.dcm") == "a/b/1.2.dcm"


def test_place_variant_new_same_and_next(tmp_path: Path) -> None:
    final = tmp_path / "1.2.3.dcm"
    assert place_variant(_tmp(tmp_path, "a", b"A"), final, _sha(b"A")) == ("new", final)
    # The same bytes again: nothing new is written.
    assert place_variant(_tmp(tmp_path, "b", b"A"), final, _sha(b"A")) == ("same", final)
    second = tmp_path / "1.2.3~2.dcm"
    assert place_variant(_tmp(tmp_path, "c", b"B"), final, _sha(b"B")) == ("new", second)
    # Identical to the second variant: found there, not written a third time.
    assert place_variant(_tmp(tmp_path, "d", b"B"), final, _sha(b"B")) == ("same", second)
    assert final.read_bytes() == b"A" and second.read_bytes() == b"B"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1.2.3.dcm", "1.2.3~2.dcm"]


def test_place_variant_refuses_past_the_limit(tmp_path: Path) -> None:
    final = tmp_path / "u.dcm"
    for i in range(MAX_VARIANTS):
        data = b"%d" % i
        assert place_variant(_tmp(tmp_path, "x", data), final, _sha(data))[0] == "new"
    with pytest.raises(FileExistsError):
        place_variant(_tmp(tmp_path, "x", b"more"), final, _sha(b"more"))
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary is gone


def test_workers_racing_for_one_name_never_share_it(tmp_path: Path) -> None:
    final = tmp_path / "u.dcm"
    contents = [b"%d" % (i % 5) for i in range(40)]  # 5 distinct contents, 8 copies each
    tmps = [_tmp(tmp_path, f"t{i}", c) for i, c in enumerate(contents)]
    results: list[tuple[str, Path]] = [("", final)] * len(contents)
    start = threading.Barrier(len(contents))

    def work(i: int) -> None:
        start.wait()
        results[i] = place_variant(tmps[i], final, _sha(contents[i]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(contents))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    on_disk = {p.name: p.read_bytes() for p in tmp_path.glob("u*.dcm")}
    assert sorted(on_disk.values()) == sorted(set(contents))  # each content exactly once
    assert sorted(on_disk) == ["u.dcm"] + [f"u~{n}.dcm" for n in range(2, 6)]
    for (_got, name), data in zip(results, contents, strict=True):
        assert name.read_bytes() == data
    assert [g for g, _ in results].count("new") == 5
    assert not list(tmp_path.glob(".*"))


def test_batch_stages_variants_and_places_them(tmp_path: Path) -> None:
    final = tmp_path / "s" / "1.2.dcm"
    final.parent.mkdir()
    final.write_bytes(b"on disk already")  # another worker's
    batch = ExclusiveBatch(tmp_path, durable=False)
    assert batch.add_variant(final, [b"A"], _sha(b"A")) == ("new", final)
    second = variant_path(final, 2)
    assert batch.add_variant(final, [b"B"], _sha(b"B")) == ("new", second)
    assert batch.add_variant(final, [b"A"], _sha(b"A")) == ("same", final)
    placed = batch.commit_variants()
    # The name on disk is taken: both move one further, in their order.
    assert placed == {final: ("new", second), second: ("new", variant_path(final, 3))}
    assert second.read_bytes() == b"A" and variant_path(final, 3).read_bytes() == b"B"
    assert final.read_bytes() == b"on disk already"


def _catalog(rows: list[str]) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE instances (path TEXT, sha256 TEXT, source_key TEXT)")
    db.executemany("INSERT INTO instances VALUES (?, ?, ?)", [(p, p, p) for p in rows])
    return db


def test_settle_orders_by_input_path_on_disk_and_in_the_catalog(tmp_path: Path) -> None:
    rel = ["p/s/r/u.dcm", "p/s/r/u~2.dcm", "p/s/r/u~3.dcm", "p/s/r/v.dcm"]
    for r in rel:
        (tmp_path / r).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / r).write_text(r)  # each file knows the name it was placed under
    db = _catalog(rel)
    # Workers finished in another order than the inputs are sorted in.
    names = {"p/s/r/u.dcm": "in/c.dcm", "p/s/r/u~2.dcm": "in/a.dcm", "p/s/r/u~3.dcm": "in/b.dcm"}
    names["p/s/r/v.dcm"] = "in/z.dcm"
    moved = settle_variants(tmp_path, db, names)
    assert moved == {
        "p/s/r/u~2.dcm": "p/s/r/u.dcm",
        "p/s/r/u~3.dcm": "p/s/r/u~2.dcm",
        "p/s/r/u.dcm": "p/s/r/u~3.dcm",
    }
    # Disk and catalog agree: each catalog row still names its own file (source_key and
    # sha256 hold the name it was placed under, so the row followed the file).
    for path, placed in db.execute("SELECT path, sha256 FROM instances"):
        assert (tmp_path / path).read_text() == placed
    shares = dict(db.execute(f"SELECT path, {SHARES_COLUMN} FROM instances"))
    assert shares["p/s/r/u.dcm"] == "u~2.dcm;u~3.dcm"
    assert shares["p/s/r/u~2.dcm"] == "u.dcm;u~3.dcm"
    assert shares["p/s/r/v.dcm"] == ""
    assert not list(tmp_path.rglob("*.tmp"))
    # Settled already: a second pass (names follow their files) moves nothing.
    assert settle_variants(tmp_path, db, {moved.get(k, k): v for k, v in names.items()}) == {}


def test_settle_puts_files_of_an_earlier_run_after(tmp_path: Path) -> None:
    rel = ["a/u.dcm", "a/u~2.dcm"]
    for r in rel:
        (tmp_path / r).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / r).write_text(r)
    db = _catalog(rel)
    # u.dcm was written by an earlier (resumed) run: its input name is not known.
    moved = settle_variants(tmp_path, db, {"a/u~2.dcm": "in/x.dcm"})
    assert moved == {"a/u~2.dcm": "a/u.dcm", "a/u.dcm": "a/u~2.dcm"}
    assert (tmp_path / "a/u.dcm").read_text() == "a/u~2.dcm"

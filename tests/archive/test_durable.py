"""Atomic and batched durable writes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from medveil.durable import BatchWriter, atomic_write


def test_batch_is_invisible_until_commit(tmp_path) -> None:
    batch = BatchWriter(tmp_path)
    batch.add(tmp_path / "a" / "x.dcm", b"one")
    batch.add(tmp_path / "a" / "y.dcm", b"two")
    assert not (tmp_path / "a" / "x.dcm").exists()
    batch.commit()
    assert (tmp_path / "a" / "x.dcm").read_bytes() == b"one"
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["x.dcm", "y.dcm"]


def test_same_path_twice_in_a_batch_keeps_the_last(tmp_path) -> None:
    batch = BatchWriter(tmp_path)
    batch.add(tmp_path / "x.dcm", b"first")
    batch.add(tmp_path / "x.dcm", b"second")
    batch.commit()
    assert (tmp_path / "x.dcm").read_bytes() == b"second"
    assert [p.name for p in tmp_path.iterdir()] == ["x.dcm"]


def test_abort_leaves_nothing(tmp_path) -> None:
    batch = BatchWriter(tmp_path)
    batch.add(tmp_path / "x.dcm", b"data")
    batch.abort()
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces(tmp_path) -> None:
    atomic_write(tmp_path / "f", b"old")
    atomic_write(tmp_path / "f", b"new")
    assert (tmp_path / "f").read_bytes() == b"new" and len(list(tmp_path.iterdir())) == 1


def test_non_durable_batch_still_renames_atomically(tmp_path, monkeypatch) -> None:
    import medveil.durable as durable

    flushed = []
    monkeypatch.setattr(durable, "_syncfs", lambda fd: flushed.append(fd) or 0)
    batch = BatchWriter(tmp_path, durable=False)
    batch.add(tmp_path / "x.dcm", [b"ab", b"cd"])
    assert not (tmp_path / "x.dcm").exists()
    batch.commit()
    assert (tmp_path / "x.dcm").read_bytes() == b"abcd" and flushed == []
    durable_batch = BatchWriter(tmp_path)
    durable_batch.add(tmp_path / "y.dcm", b"z")
    durable_batch.commit()
    assert len(flushed) == 1


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(max_size=3000), max_size=12))
def test_chunks_land_in_order(tmp_path_factory, chunks) -> None:
    root = tmp_path_factory.mktemp("chunks")
    batch = BatchWriter(root, durable=False)
    # bytes, bytearrays and memoryviews, as the engines hand them over
    mixed = [
        c if i % 3 == 0 else bytearray(c) if i % 3 == 1 else memoryview(c)
        for i, c in enumerate(chunks)
    ]
    batch.add(root / "a" / "f.dcm", mixed)
    batch.commit()
    assert (root / "a" / "f.dcm").read_bytes() == b"".join(chunks)


def test_a_folder_removed_between_files_is_made_again(tmp_path) -> None:
    import shutil

    batch = BatchWriter(tmp_path, durable=False)
    batch.add(tmp_path / "p" / "s" / "1.dcm", b"one")
    batch.commit()
    shutil.rmtree(tmp_path / "p")
    batch.add(tmp_path / "p" / "s" / "2.dcm", b"two")
    batch.commit()
    assert (tmp_path / "p" / "s" / "2.dcm").read_bytes() == b"two"

"""Atomic and batched durable writes."""

from __future__ import annotations

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

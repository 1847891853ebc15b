"""safe_join resolves OUTPUT once per folder it leads to, never a stale one (durable.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from medveil.durable import UnsafePath, safe_join

REL = "MVABC234/1.2/3.4/5.6.dcm"


def test_a_link_planted_after_the_root_was_resolved_is_found(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "MVABC234").mkdir(parents=True)
    assert safe_join(out, REL) == out / REL  # resolved (and remembered) here
    outside = tmp_path / "outside"
    outside.mkdir()
    (out / "MVABC234" / "1.2").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePath, match="resolves outside"):
        safe_join(out, REL)


def test_a_root_swapped_for_a_link_is_resolved_again(tmp_path: Path) -> None:
    first, second, outside = tmp_path / "first", tmp_path / "second", tmp_path / "outside"
    for folder in (first, second, outside):
        folder.mkdir()
    root = tmp_path / "out"
    root.symlink_to(first, target_is_directory=True)
    assert safe_join(root, REL) == root / REL
    # OUTPUT now leads to another folder, where a part of the path is a link out of it:
    # checked against the new folder, not the one resolved before.
    root.unlink()
    root.symlink_to(second, target_is_directory=True)
    (second / "MVABC234").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePath, match="resolves outside"):
        safe_join(root, REL)

"""Progress of an archive run: a total (and ETA) once the inputs are listed, never an empty
"0file" bar, one line every few seconds off a terminal, quarantine lines above the bar."""

from __future__ import annotations

import functools
import re
import tarfile
from pathlib import Path

import pytest
from medveil.cli import console
from medveil.cli import deid as deid_cli
from medveil.cli.main import main
from medveil.run.archive import RunSummary, deidentify_archive

from tests.archive.mixed import SECRET, mixed_input


@pytest.fixture(autouse=True)
def _reset_logging():
    yield
    console.setup_logging()


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mixed input four times over (36 inputs, in four folders)."""
    root = tmp_path_factory.mktemp("many")
    for i in range(4):
        mixed_input(root / "in" / f"copy{i}")
    return root / "in"


def _n_inputs(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file())


def _key(tmp_path: Path) -> str:
    key = tmp_path / "k"
    key.write_text(SECRET.hex())
    key.chmod(0o600)
    return str(key)


def test_the_run_reports_its_total_while_running(many: Path, tmp_path: Path) -> None:
    seen: list[tuple[int, int | None]] = []

    def progress(summary: RunSummary) -> None:
        seen.append((summary.files_in, summary.total))

    n = _n_inputs(many)
    summary = deidentify_archive(
        many, tmp_path / "out", secret=SECRET, workers=1, progress=progress
    )
    assert summary.total == summary.files_in == n
    assert [done for done, _ in seen] == list(range(1, n + 1))  # never a call at 0
    totals = {total for _, total in seen}
    # Known long before the end (a second listing in a thread), and always the right one.
    assert totals <= {None, n} and n in totals
    assert seen[n // 2][1] == n


def test_a_compressed_tar_is_not_listed_twice(tmp_path: Path) -> None:
    src = mixed_input(tmp_path / "in")
    archive = tmp_path / "in.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src, arcname="in")
    seen: list[int | None] = []
    summary = deidentify_archive(
        archive,
        tmp_path / "out",
        secret=SECRET,
        workers=1,
        progress=lambda s: seen.append(s.total),
    )
    assert set(seen) == {None}  # unknown while it runs: decompressing twice costs too much
    assert summary.total == summary.files_in == _n_inputs(src)


def test_off_a_terminal_one_line_per_interval_with_total(
    many: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    # Every update prints (interval 0) so that the lines can be checked one by one.
    monkeypatch.setattr(deid_cli, "Progress", functools.partial(console.Progress, interval=0.0))
    n = _n_inputs(many)
    argv = ["deid", str(many), str(tmp_path / "out"), "--secret-file", _key(tmp_path)]
    main([*argv, "--workers", "1"])
    err = capsys.readouterr().err.splitlines()
    lines = [line for line in err if " files done" in line]
    assert lines, err
    assert all(line.startswith("medveil: ") for line in lines)
    assert not any(line.startswith("medveil: 0 ") for line in lines)
    with_total = [line for line in lines if f" of {n} files done" in line]
    assert with_total and re.search(r"ETA \d+ s$", with_total[0]), with_total[:3]
    assert "\r" not in "".join(err)  # no bar drawn off a terminal


def test_on_a_terminal_quarantine_lines_go_above_the_bar(
    many: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setattr(console, "_stderr_is_tty", lambda: True)
    n = _n_inputs(many)
    argv = ["deid", str(many), str(tmp_path / "out"), "--secret-file", _key(tmp_path)]
    assert main([*argv, "--workers", "1"]) == 1
    err = capsys.readouterr().err
    quarantined = [line for line in err.split("\n") if "quarantined: " in line]
    assert len(quarantined) == 4  # the cut file in each of four copies (UID clashes are released)
    for line in quarantined:
        # tqdm clears the bar ('\r', spaces, '\r') and writes the line whole after it.
        assert line.split("\r")[-1].startswith("quarantined: "), repr(line)
    assert f"{n}/{n}" in err  # the bar ends at its total
    assert not re.search(r"(^|\r)\s*0(%|file| ?\[|/)", err)  # no empty bar
    assert not re.search(r"\| 0/\d", err)

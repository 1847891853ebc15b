"""``medveil keygen`` / ``seal`` / ``unseal`` end to end, for files and folder trees."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from medveil.cli.main import main

from .conftest import needs_age, run_age


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "originals"
    (root / "study1" / "series2").mkdir(parents=True)
    (root / "study1" / "a.dcm").write_bytes(b"DICM" * 1000)
    (root / "study1" / "series2" / "b.dcm").write_bytes(bytes(70_000))
    (root / "keys.csv").write_bytes(b"")  # empty files too
    return root


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_keygen_seal_unseal_tree(
    tmp_path: Path, tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "id.txt"
    assert main(["keygen", str(key)]) == 0
    recipient = capsys.readouterr().out.strip()
    assert recipient.startswith("age1")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert main(["keygen", str(key)]) == 2  # never overwrite

    sealed = tmp_path / "sealed"
    assert main(["seal", str(tree), str(sealed), "--recipient", recipient]) == 0
    assert sorted(files(sealed)) == ["keys.csv.age", "study1/a.dcm.age", "study1/series2/b.dcm.age"]
    assert all(v.startswith(b"age-encryption.org/v1\n") for v in files(sealed).values())
    back = tmp_path / "back"
    assert main(["unseal", str(sealed), str(back), "--identity", str(key)]) == 0
    assert files(back) == files(tree)
    # Outputs are not silently replaced.
    assert main(["unseal", str(sealed), str(back), "--identity", str(key)]) == 2
    assert main(["unseal", str(sealed), str(back), "--identity", str(key), "--force"]) == 0


def test_passphrase_from_environment(
    tmp_path: Path, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDVEIL_PASSPHRASE", "open sesame")
    src = tree / "study1" / "a.dcm"
    assert main(["seal", str(src), str(tmp_path / "a.age"), "--passphrase"]) == 0
    assert main(["unseal", str(tmp_path / "a.age"), str(tmp_path / "a.out"), "-p"]) == 0
    assert (tmp_path / "a.out").read_bytes() == src.read_bytes()
    monkeypatch.setenv("MEDVEIL_PASSPHRASE", "wrong")
    assert main(["unseal", str(tmp_path / "a.age"), str(tmp_path / "b.out"), "-p"]) == 1
    assert not (tmp_path / "b.out").exists()


def test_passphrase_prompt(tmp_path: Path, tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDVEIL_PASSPHRASE", raising=False)
    answers = iter(["typed", "typed", "typed"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    src = tree / "study1" / "a.dcm"
    assert main(["seal", str(src), str(tmp_path / "a.age"), "-p"]) == 0
    assert main(["unseal", str(tmp_path / "a.age"), str(tmp_path / "a.out"), "-p"]) == 0
    assert (tmp_path / "a.out").read_bytes() == src.read_bytes()
    mismatch = iter(["one", "two"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(mismatch))
    assert main(["seal", str(src), str(tmp_path / "c.age"), "-p"]) == 2


def test_tampered_file_reports_and_writes_nothing(
    tmp_path: Path, tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "id.txt"
    main(["keygen", str(key)])
    recipient = capsys.readouterr().out.strip()
    src = tree / "study1" / "series2" / "b.dcm"
    main(["seal", str(src), str(tmp_path / "b.age"), "-r", recipient])
    blob = bytearray((tmp_path / "b.age").read_bytes())
    blob[-20] ^= 1
    (tmp_path / "b.age").write_bytes(blob)
    assert main(["unseal", str(tmp_path / "b.age"), str(tmp_path / "b.out"), "-i", str(key)]) == 1
    assert "failed authentication" in capsys.readouterr().err
    assert not (tmp_path / "b.out").exists()
    other = tmp_path / "other.txt"
    main(["keygen", str(other)])
    (tmp_path / "c.age").write_bytes(b"")
    main(["seal", str(src), str(tmp_path / "d.age"), "-r", recipient])
    assert main(["unseal", str(tmp_path / "d.age"), str(tmp_path / "d.out"), "-i", str(other)]) == 1
    assert not (tmp_path / "d.out").exists()


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["seal", str(tmp_path / "missing"), str(tmp_path / "x"), "-r", "age1x"]) == 2
    (tmp_path / "f").write_bytes(b"x")
    assert main(["seal", str(tmp_path / "f"), str(tmp_path / "x"), "-r", "age1notvalid"]) == 2
    assert "bech32" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["seal", str(tmp_path / "f"), str(tmp_path / "x")])  # no recipient nor passphrase


@needs_age
def test_cli_output_opens_with_age(
    tmp_path: Path, tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "id.txt"
    main(["keygen", str(key)])
    recipient = capsys.readouterr().out.strip()
    src = tree / "study1" / "a.dcm"
    assert main(["seal", str(src), str(tmp_path / "a.age"), "-r", recipient]) == 0
    assert run_age(["-d", "-i", str(key), str(tmp_path / "a.age")]) == src.read_bytes()

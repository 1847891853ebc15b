"""``medveil reidentify`` and ``medveil vault keygen|export|rotate|audit``."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from medveil.cli.main import main
from medveil.crypto import agefile as age
from medveil.crypto.vault import Vault, load_key

from tests.vault.test_vault import make_identities


@pytest.fixture
def filled(vault_url: str, key: bytes) -> str:
    """A vault holding two fake patients."""
    with Vault(vault_url, key) as v:
        v.record(make_identities(2, 1, 1))
    return vault_url


def test_keygen(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "k"
    assert main(["vault", "keygen", str(path)]) == 0
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    key = load_key(path)
    assert main(["vault", "keygen", str(path)]) == 2
    assert "not overwriting" in capsys.readouterr().err
    assert load_key(path) == key


def test_reidentify_prints_the_original(
    filled: str, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ident = make_identities(2, 1, 1)[1]
    assert (
        main(["reidentify", "--vault", filled, "--key-file", str(key_file), ident.series_uid]) == 0
    )
    out = capsys.readouterr().out
    assert f"PatientID: {ident.patient_id}" in out
    assert f"PatientName: {ident.patient_name}" in out
    assert f"original SeriesInstanceUID: {ident.original_series_uid}" in out
    assert f"AccessionNumber: {ident.accession_number}" in out
    # A folder path of the released archive works as well as the bare pseudonym.
    folder = f"released/{ident.pseudonym}/"
    assert main(["reidentify", "--vault", filled, "--key-file", str(key_file), folder]) == 0
    assert f"PatientID: {ident.patient_id}" in capsys.readouterr().out
    assert main(["reidentify", "--vault", filled, "--key-file", str(key_file), "MVNONE"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "not in the vault" in captured.err


def test_reidentify_wrong_key_prints_nothing(
    filled: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ident = make_identities(2, 1, 1)[0]
    wrong = tmp_path / "wrong.key"
    assert main(["vault", "keygen", str(wrong)]) == 0
    capsys.readouterr()
    rc = main(["reidentify", "--vault", filled, "--key-file", str(wrong), ident.pseudonym])
    captured = capsys.readouterr()
    assert rc == 2
    assert captured.out == ""
    assert "does not open the vault" in captured.err
    assert ident.patient_id not in captured.err
    # The attempt is in the audit log, readable without the key.
    assert main(["vault", "audit", "--vault", filled]) == 0
    log = capsys.readouterr().out.strip().splitlines()
    assert log[-1].split("\t")[-3:] == ["lookup", ident.pseudonym, "wrong key"]


def test_reidentify_missing_vault(
    tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = tmp_path / "nothing.sqlite"
    assert main(["reidentify", "--vault", str(url), "--key-file", str(key_file), "MVX"]) == 2
    assert "no vault" in capsys.readouterr().err
    assert not url.exists()


def test_export_and_rotate(
    filled: str, key_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    identity, recipient = age.generate_identity()
    out = tmp_path / "site.age"
    args = ["vault", "export", "--vault", filled, "--key-file", str(key_file), "-r", recipient]
    assert main([*args, str(out)]) == 0
    text = age.decrypt_bytes(out.read_bytes(), identities=[identity]).decode()
    for ident in make_identities(2, 1, 1):
        assert ident.patient_name in text and ident.original_series_uid in text
    assert main([*args, str(out)]) == 2  # no silent overwrite
    assert "exists" in capsys.readouterr().err

    new = tmp_path / "new.key"
    assert main(["vault", "keygen", str(new)]) == 0
    rotate = ["vault", "rotate", "--vault", filled]
    assert main([*rotate, "--old-key", str(new), "--new-key", str(key_file)]) == 2
    assert "unchanged" in capsys.readouterr().err
    assert main([*rotate, "--old-key", str(key_file), "--new-key", str(new)]) == 0
    ident = make_identities(2, 1, 1)[0]
    look = ["reidentify", "--vault", filled, ident.pseudonym]
    capsys.readouterr()
    assert main([*look, "--key-file", str(key_file)]) == 2
    assert capsys.readouterr().out == ""
    assert main([*look, "--key-file", str(new)]) == 0
    assert f"PatientID: {ident.patient_id}" in capsys.readouterr().out


def test_vault_without_action_shows_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vault"]) == 2
    assert "keygen" in capsys.readouterr().out

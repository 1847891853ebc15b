"""Key files for the pseudonym secret and the vault key; `medveil secret`."""

from __future__ import annotations

import os
import stat

import pytest
from medveil.cli.main import main
from medveil.crypto.keyfile import create_key_file, read_key_file
from medveil.errors import MedveilError
from medveil.policy.keys import load_secret


def test_created_key_is_private_and_reads_back(tmp_path) -> None:
    path = tmp_path / "sub" / "k"
    key = create_key_file(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert read_key_file(path, 32, "test key", "x") == key == load_secret(path)
    with pytest.raises(FileExistsError):
        create_key_file(path)  # never overwritten
    raw = tmp_path / "raw"
    raw.write_bytes(bytes(range(32)))
    raw.chmod(0o600)  # a key file others can read is refused
    assert load_secret(raw) == bytes(range(32))


def test_bad_key_file_names_file_and_remedy(tmp_path) -> None:
    path = tmp_path / "short"
    path.write_text("abcd")
    path.chmod(0o600)
    with pytest.raises(MedveilError, match=r"short must hold 64 hex.*medveil secret FILE"):
        load_secret(path)


def test_cli_secret(tmp_path, capsys) -> None:
    path = tmp_path / "site.key"
    assert main(["secret", str(path)]) == 0
    secret = load_secret(path)
    out = capsys.readouterr()
    assert secret.hex() not in out.out + out.err
    assert main(["secret", str(path)]) == 2
    assert load_secret(path) == secret

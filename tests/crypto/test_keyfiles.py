"""Key files and vault URLs: private modes, private folders, no writes through links, no
passwords in messages."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from medveil.cli.main import main
from medveil.crypto import agefile as age
from medveil.crypto import keyfile
from medveil.crypto.vault import Vault, keygen, load_key
from medveil.crypto.vault.backends import VaultError, describe, open_backend, scrub
from medveil.errors import MedveilError
from medveil.policy.keys import create_secret, load_secret

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# --- reading: refuse what others can read or write -------------------------------------

LOADERS = [
    ("secret", lambda p: create_secret(p), lambda p: load_secret(p)),
    ("vault key", lambda p: keygen(p), lambda p: load_key(p)),
    ("age identity", lambda p: age.keygen(p), lambda p: age.load_identities(p)),
]


@pytest.mark.parametrize(("what", "create", "load"), LOADERS)
@pytest.mark.parametrize("bad_mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o660, 0o610])
def test_open_key_files_are_refused_with_the_chmod(
    tmp_path: Path, what: str, create: object, load: object, bad_mode: int
) -> None:
    path = tmp_path / "k"
    create(path)  # type: ignore[operator]
    assert mode(path) == 0o600
    good = load(path)  # type: ignore[operator]
    os.chmod(path, bad_mode)
    with pytest.raises(MedveilError) as err:
        load(path)  # type: ignore[operator]
    msg = str(err.value)
    assert f"the {what} file {path} is open to other users (mode {bad_mode:04o})" in msg
    assert f"`chmod 600 {path}`" in msg
    os.chmod(path, 0o600)  # the remedy works
    assert load(path) == good  # type: ignore[operator]
    os.chmod(path, 0o400)  # read-only for the owner is fine too
    assert load(path) == good  # type: ignore[operator]


def test_the_file_behind_a_link_is_checked(tmp_path: Path) -> None:
    real = tmp_path / "real.key"
    key = create_secret(real)
    link = tmp_path / "link.key"
    link.symlink_to(real)
    assert load_secret(link) == key  # a link (a mounted secret) to a private file is fine
    os.chmod(real, 0o644)
    with pytest.raises(MedveilError, match="open to other users"):
        load_secret(link)


def test_secret_never_appears_in_messages(tmp_path: Path) -> None:
    path = tmp_path / "k"
    key = create_secret(path)
    os.chmod(path, 0o644)
    with pytest.raises(MedveilError) as err:
        load_secret(path)
    assert key.hex() not in str(err.value)


def test_cli_refuses_an_open_identity_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "id.txt"
    recipient = age.keygen(key)
    (tmp_path / "pt").write_bytes(b"data")
    assert main(["seal", "-r", recipient, str(tmp_path / "pt"), str(tmp_path / "pt.age")]) == 0
    os.chmod(key, 0o644)
    capsys.readouterr()
    assert main(["unseal", "-i", str(key), str(tmp_path / "pt.age"), str(tmp_path / "out")]) == 2
    assert f"chmod 600 {key}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# --- creating: private folders, never through a link ------------------------------------


@pytest.mark.parametrize("create", [create_secret, keygen, age.keygen])
def test_created_folders_are_private(tmp_path: Path, create: object) -> None:
    parent = tmp_path / "existing"
    parent.mkdir(mode=0o755)
    os.chmod(parent, 0o755)
    path = parent / "a" / "b" / "key"
    create(path)  # type: ignore[operator]
    assert mode(parent / "a") == 0o700 and mode(parent / "a" / "b") == 0o700
    assert mode(path) == 0o600
    assert mode(parent) == 0o755  # folders that existed are left as they were


@pytest.mark.parametrize("create", [create_secret, keygen, age.keygen])
def test_a_planted_link_is_not_written_through(tmp_path: Path, create: object) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    path = tmp_path / "key"
    path.symlink_to(victim)
    with pytest.raises(FileExistsError):
        create(path)  # type: ignore[operator]
    assert victim.read_text() == "keep me"
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError):
        create(dangling)  # type: ignore[operator]
    assert not (tmp_path / "nowhere").exists()


def test_write_private_file_temp_is_exclusive_and_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    dst = tmp_path / "out.age"
    # An attacker who could guess the temporary name plants a link there first.
    monkeypatch.setattr(keyfile.secrets, "token_hex", lambda n: "guessed")
    (tmp_path / ".out.age.guessed.partial").symlink_to(victim)
    with pytest.raises(FileExistsError):
        keyfile.write_private_file(dst, b"sealed", replace=True)
    assert victim.read_text() == "keep me" and not dst.exists()


def test_write_private_file_replaces_a_link_not_its_target(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    dst = tmp_path / "out.age"
    dst.symlink_to(victim)
    with pytest.raises(FileExistsError):
        keyfile.write_private_file(dst, b"sealed", replace=False)
    assert dst.is_symlink() and victim.read_text() == "keep me"
    keyfile.write_private_file(dst, b"sealed", replace=True)
    assert not dst.is_symlink() and dst.read_bytes() == b"sealed" and mode(dst) == 0o600
    assert victim.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.age", "victim"]  # no leftovers


def test_vault_export_is_private_and_honours_replace(tmp_path: Path) -> None:
    keyfile_path = tmp_path / "vault.key"
    keygen(keyfile_path)
    ident, recipient = age.generate_identity()
    dst = tmp_path / "crosswalk.age"
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    dst.symlink_to(victim)
    # The temporary name used to be fixed and opened with O_TRUNC, following links.
    (tmp_path / ".crosswalk.age.partial").symlink_to(victim)
    with Vault.open(tmp_path / "v.sqlite", keyfile_path) as vault:
        with pytest.raises(FileExistsError):
            vault.export(dst, recipients=[recipient], replace=False)
        assert vault.export(dst, recipients=[recipient]) == 0
    assert victim.read_text() == "keep me" and mode(dst) == 0o600
    assert age.decrypt_bytes(dst.read_bytes(), identities=[ident]).startswith(b"pseudonym,")


# --- vault URLs: passwords masked everywhere ------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://bob:Sup3rS3cret@db:5432/v", "postgresql://bob:***@db:5432/v"),
        ("postgres://bob:Sup3r%40S3cret@db/v", "postgres://bob:***@db/v"),
        ("postgresql://bob:Sup3r@S3cret@db/v", "postgresql://bob:***@db/v"),
        ("postgresql://bob:Sup3r/S3cret@db/v", "postgresql://bob:***@db/v"),
        ("postgresql://bob:Sup3rS3cret@[::1/v", "postgresql://bob:***@[::1/v"),
        (
            "postgresql://db/v?user=bob&password=Sup3rS3cret",
            "postgresql://db/v?user=bob&password=***",
        ),
        ("host=db password=Sup3rS3cret dbname=v", "host=db password=*** dbname=v"),
        ("host=db password='Sup3r S3cret' dbname=v", "host=db password=*** dbname=v"),
        ("postgresql://bob@db/v", "postgresql://bob@db/v"),
        ("sqlite:///srv/a@b/vault.sqlite", "sqlite:///srv/a@b/vault.sqlite"),
        ("sqlite://bob:Sup3rS3cret@host/v.sqlite", "sqlite://bob:***@host/v.sqlite"),
    ],
)
def test_describe_masks_passwords(url: str, shown: str) -> None:
    assert describe(url) == shown
    assert "S3cret" not in scrub(f"driver said: {url!r}", url)


def test_keyword_connection_string_is_not_taken_for_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(VaultError) as err:
        open_backend("host=db password=Sup3rS3cret dbname=v")
    assert "S3cret" not in str(err.value) and "postgresql://" in str(err.value)
    assert list(tmp_path.iterdir()) == []  # no SQLite file named after the password
    with pytest.raises(VaultError) as err:
        open_backend("sqlite://bob:Sup3rS3cret@host/v.sqlite")
    assert "S3cret" not in str(err.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://bob:Sup3rS3cret@127.0.0.1:1/vault",  # nothing listens on port 1
        "postgresql://bob:Sup3r%zzS3cret@127.0.0.1:1/vault",  # bad escape, quoted back
        "postgresql://127.0.0.1:1/vault?password=Sup3rS3cret&bogus=1",
    ],
)
def test_postgres_errors_never_show_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(VaultError) as err:
        open_backend(url)
    assert "S3cret" not in str(err.value) and "***" in str(err.value)
    key = tmp_path / "vault.key"
    keygen(key)
    for argv in (
        ["reidentify", "--vault", url, "--key-file", str(key), "MVX"],
        ["vault", "audit", "--vault", url],
        ["vault", "rotate", "--vault", url, "--old-key", str(key), "--new-key", str(key)],
    ):
        assert main(argv) == 2
        out, errtext = capsys.readouterr()
        assert "S3cret" not in out + errtext

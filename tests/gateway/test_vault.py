"""`medveil serve --vault`: every acknowledged instance's crosswalk is in the vault first."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("pynetdicom")

from medveil.crypto.vault import Vault, keygen, load_key
from medveil.errors import MedveilError
from medveil.net.gateway import Gateway, GatewayConfig
from medveil.run.archive import RECORDS, deidentify_archive

from .helpers import SECRET, demo_policy, tree
from .test_store import send


def test_gateway_fills_the_vault_as_the_archive_run_does(start_gateway, demo, tmp_path):
    files, reference = demo
    key_file = tmp_path / "vault.key"
    keygen(key_file)
    key = load_key(key_file)
    gw_vault = f"sqlite:///{tmp_path / 'gw.sqlite'}"
    gw, _log = start_gateway(vault=(gw_vault, key))
    assert send(gw.port, files) == [0] * len(files)
    # Same bytes as without a vault (the Dataset engine writes what the raw one would).
    assert tree(gw.config.store) == reference
    local_vault = f"sqlite:///{tmp_path / 'local.sqlite'}"
    out = tmp_path / "local"
    src = files[0].parents[2]
    with Vault(local_vault, key) as v:
        deidentify_archive(src, out, policy=demo_policy(), secret=SECRET, workers=1, vault=v)
    folders = sorted(p.name for p in out.iterdir() if p.name != RECORDS)
    with Vault(gw_vault, key) as a, Vault(local_vault, key) as b:
        assert a.counts()["patients"] == b.counts()["patients"] == len(folders) >= 2
        assert a.counts()["series"] == b.counts()["series"]
        for folder in folders:
            found_a, found_b = a.lookup(folder), b.lookup(folder)
            assert found_a is not None and found_b is not None
            assert found_a.lines() == found_b.lines()


def test_vault_key_must_differ_from_the_secret(tmp_path: Path):
    with pytest.raises(MedveilError, match="must differ"):
        Gateway(
            GatewayConfig(
                policy=demo_policy(),
                secret=SECRET,
                store=tmp_path / "s",
                vault=(f"sqlite:///{tmp_path / 'v.sqlite'}", SECRET),
            )
        )


def test_serve_vault_options_go_together(tmp_path: Path, capsys):
    from medveil.cli.main import main

    secret = tmp_path / "secret"
    secret.write_text(SECRET.hex())
    secret.chmod(0o600)
    args = ["serve", "--secret-file", str(secret), "--store", str(tmp_path / "s")]
    rc = main([*args, "--allow-any", "--vault", str(tmp_path / "v.sqlite")])
    assert rc == 2 and "--vault-key" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "v.sqlite")

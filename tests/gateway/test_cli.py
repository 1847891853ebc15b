"""`medveil serve` argument handling (the running server is tested in test_load.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pynetdicom")

from medveil.cli.main import build_parser, main
from medveil.cli.serve import config_from_args

from .helpers import SECRET


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    """A secret file holding the test secret in hex."""
    p = tmp_path / "secret"
    p.write_text(SECRET.hex())
    p.chmod(0o600)
    return p


def test_arguments_become_the_gateway_configuration(secret_file, tmp_path):
    args = build_parser().parse_args(
        [
            "serve",
            "--secret-file",
            str(secret_file),
            "--forward",
            "127.0.0.1:104:PACS",
            "--spool",
            str(tmp_path / "spool"),
            "--allow",
            "CT1@127.0.0.1",
            "--allow",
            "*@10.0.0.0/8",
            "--port",
            "4242",
            "--ae-title",
            "GW",
            "--workers",
            "3",
            "--max-pending-mb",
            "8",
        ]
    )
    cfg = config_from_args(args)
    assert cfg.secret == SECRET and cfg.store is None
    assert cfg.forward == ("127.0.0.1", 104, "PACS")
    assert (cfg.port, cfg.ae_title, cfg.workers, cfg.max_pending_bytes) == (4242, "GW", 3, 8 << 20)
    assert [r.aet for r in cfg.allow] == ["CT1", "*"]
    assert cfg.allow[1].matches("ANY", "10.1.2.3") and not cfg.allow[0].matches("CT1", "10.1.2.3")


def test_store_and_forward_are_exclusive(secret_file, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(
            ["serve", "--secret-file", str(secret_file), "--store", "x", "--forward", "h:1:A"]
        )
    assert "not allowed with" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra",
    [
        ["--allow", "no-host-part"],
        ["--tls-cert", "cert.pem"],  # a certificate without its key
    ],
)
def test_bad_setup_exits_2_before_listening(secret_file, tmp_path, capsys, extra):
    rc = main(["serve", "--secret-file", str(secret_file), "--store", str(tmp_path / "s"), *extra])
    assert rc == 2
    assert capsys.readouterr().err.startswith("medveil: ")

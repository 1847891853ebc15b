"""One error prefix style: setup errors of `medveil serve` and argparse's usage errors of
every subcommand start with ``medveil: `` like every other error line."""

from __future__ import annotations

from pathlib import Path

import pytest
from medveil.cli import console
from medveil.cli.main import main
from medveil.policy.keys import create_secret


@pytest.fixture(autouse=True)
def _reset_logging():
    yield
    console.setup_logging()


@pytest.mark.parametrize(
    "extra",
    [
        ["--allow", "no-host-part"],
        ["--tls-cert", "cert.pem"],  # a certificate without its key
    ],
)
def test_serve_setup_errors_share_the_prefix(tmp_path: Path, capsys, extra) -> None:
    pytest.importorskip("pynetdicom")
    secret = tmp_path / "secret"
    create_secret(secret)
    rc = main(["serve", "--secret-file", str(secret), "--store", str(tmp_path / "s"), *extra])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and all(line.startswith("medveil: ") for line in err), err
    assert not any(line.startswith("medveil serve:") for line in err)


@pytest.mark.parametrize(
    ("argv", "where"),
    [
        (["serve", "--store", "x", "--forward", "h:1:A", "--secret-file", "k"], "serve: "),
        (["deid", "in", "out", "--workers", "many"], "deid: "),
        (["policy", "show"], "policy show: "),
        (["no-such-command"], ""),
    ],
)
def test_usage_errors_share_the_prefix(argv: list[str], where: str, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("usage: medveil")  # the usage stays, as argparse prints it
    assert err[-1].startswith(f"medveil: {where}") and err[-1].endswith("--help`)"), err[-1]

"""Fixtures of the gateway tests: a demo study, its file-based reference output, gateways."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("pynetdicom")

from medveil.net.gateway import Gateway, GatewayConfig
from medveil.run.archive import deidentify_archive
from medveil.run.demo import write_demo_archive

from .helpers import SECRET, CapturedLog, demo_policy, tree


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], dict[str, bytes]]:
    """The demo study's DICOM files and what ``medveil deid`` writes for them."""
    root = tmp_path_factory.mktemp("demo")
    files = [p for p in write_demo_archive(root / "in") if p.suffix == ".dcm"]
    summary = deidentify_archive(
        root / "in", root / "ref", policy=demo_policy(), secret=SECRET, workers=1
    )
    assert summary.written == len(files) and summary.quarantined == 0
    return files, tree(root / "ref")


@pytest.fixture
def start_gateway(
    tmp_path: Path,
) -> Iterator[Callable[..., tuple[Gateway, CapturedLog]]]:
    """Factory: start a gateway on 127.0.0.1 (free port); every one is stopped at the end."""
    started: list[Gateway] = []

    def start(**kwargs: object) -> tuple[Gateway, CapturedLog]:
        kwargs.setdefault("policy", demo_policy())
        kwargs.setdefault("secret", SECRET)
        kwargs.setdefault("workers", 2)
        kwargs.setdefault("host", "127.0.0.1")
        kwargs.setdefault("port", 0)
        if "store" not in kwargs and "forward" not in kwargs:
            kwargs["store"] = tmp_path / f"store{len(started)}"
        log = CapturedLog()
        gw = Gateway(GatewayConfig(**kwargs), log)  # type: ignore[arg-type]
        gw.start()
        started.append(gw)
        return gw, log

    yield start
    for gw in started:
        gw.stop()

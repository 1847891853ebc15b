"""Shared fixtures: run kernel tests on every SIMD backend this machine has."""

from __future__ import annotations

from collections.abc import Iterator

import medveil
import pytest
from medveil import _core

BACKENDS = list(_core.dispatch.available())


@pytest.fixture(params=BACKENDS, scope="module")
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Force each available backend in turn, restoring the previous one afterwards."""
    before = _core.dispatch.active()
    medveil.set_backend(request.param)
    try:
        yield request.param
    finally:
        medveil.set_backend(before)


def bundled_test_files() -> list[str]:
    """Every test file shipped inside pydicom itself (never the downloadable extras).

    pydicom.data.get_testdata_files() also tries to download pydicom-data's files, with
    retries, which stalls a machine without access to GitHub.
    """
    import os

    from pydicom.data import DATA_ROOT

    folder = os.path.join(DATA_ROOT, "test_files")
    return sorted(
        os.path.join(folder, f)
        for f in os.listdir(folder)
        if os.path.isfile(os.path.join(folder, f))
    )


@pytest.fixture(scope="session")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """The bytes of every file of the bundled demo archive (CT, MR, multi-frame US)."""
    from medveil.run.demo import write_demo_archive

    folder = tmp_path_factory.mktemp("demo")
    write_demo_archive(folder)
    return [p.read_bytes() for p in sorted(folder.rglob("*.dcm"))]

"""Shared fixtures: run kernel tests on every SIMD backend this machine has."""

from __future__ import annotations

from collections.abc import Iterator

import medveil
import pytest
from medveil import _core

BACKENDS = list(_core.dispatch.available())
# Every backend the core knows, so a machine without one reports its tests as skipped
# (with the reason) rather than silently running fewer.
ALL_BACKENDS = ["scalar", "avx2", "avx512"] + [
    b for b in BACKENDS if b not in ("scalar", "avx2", "avx512")
]
_NEEDS = {
    "avx2": ("avx2", "fma", "bmi2"),
    "avx512": ("avx2", "fma", "bmi2", "avx512f", "avx512vl", "avx512bw", "avx512ifma"),
}
EXERCISED: set[str] = set()


def _why_unavailable(name: str) -> str:
    cpu = _core.dispatch.cpu()
    missing = [f for f in _NEEDS.get(name, ()) if not cpu.get(f, False)]
    if missing:
        return f"backend {name!r}: this CPU lacks {', '.join(missing)}"
    return f"backend {name!r} is not compiled into this build of the core"


@pytest.fixture(params=ALL_BACKENDS, scope="module")
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Force each backend in turn (skipping, with the reason, those this machine lacks),
    restoring the previous one afterwards."""
    if request.param not in BACKENDS:
        pytest.skip(_why_unavailable(request.param))
    before = _core.dispatch.active()
    medveil.set_backend(request.param)
    EXERCISED.add(request.param)
    try:
        yield request.param
    finally:
        medveil.set_backend(before)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which SIMD backends the kernel tests ran on, and which were skipped."""
    if not EXERCISED:
        return
    ran = [b for b in ALL_BACKENDS if b in EXERCISED]
    skipped = [f"{b} ({_why_unavailable(b)})" for b in ALL_BACKENDS if b not in BACKENDS]
    terminalreporter.write_line(f"SIMD backends exercised: {', '.join(ran)}")
    if skipped:
        terminalreporter.write_line(f"SIMD backends skipped: {'; '.join(skipped)}")


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

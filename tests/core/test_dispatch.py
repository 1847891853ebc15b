"""The backend is visible, forceable, and the environment variable is honoured."""

from __future__ import annotations

import os
import subprocess
import sys

import medveil
import pytest
from medveil import _core


def test_cpu_features_reports_active_backend() -> None:
    info = medveil.cpu_features()
    assert info["backend"] in info["available"]
    assert info["available"][0] == "scalar"
    assert isinstance(info["cpu"]["avx2"], bool)
    if "avx2" in info["available"]:
        assert info["cpu"]["avx2"]


def test_unknown_backend_rejected() -> None:
    with pytest.raises(ValueError, match="unknown SIMD backend"):
        medveil.set_backend("sse9")


@pytest.mark.parametrize("wanted", ["scalar", "auto"])
def test_env_var_selects_backend(wanted: str) -> None:
    env = {**os.environ, "MEDVEIL_SIMD": wanted}
    out = subprocess.run(
        [sys.executable, "-c", "import medveil; print(medveil.cpu_features()['backend'])"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    expected = "scalar" if wanted == "scalar" else _core.dispatch.available()[-1]
    assert out == expected


def test_avx512_listed_exactly_when_the_cpu_has_it() -> None:
    cpu = _core.dispatch.cpu()
    has = all(cpu[f] for f in ("avx2", "avx512f", "avx512vl", "avx512bw", "avx512ifma"))
    assert ("avx512" in _core.dispatch.available()) == has
    if not has:
        with pytest.raises(ValueError, match="not available"):
            medveil.set_backend("avx512")


@pytest.mark.parametrize("name", ["scalar", "avx2", "avx512"])
def test_every_available_backend_is_forceable(name: str) -> None:
    if name not in _core.dispatch.available():
        pytest.skip(f"backend {name!r} not available on this machine")
    before = _core.dispatch.active()
    try:
        medveil.set_backend(name)
        assert _core.dispatch.active() == name
    finally:
        medveil.set_backend(before)


def test_env_var_forces_avx512_or_falls_back() -> None:
    env = {**os.environ, "MEDVEIL_SIMD": "avx512"}
    out = subprocess.run(
        [sys.executable, "-c", "import medveil; print(medveil.cpu_features()['backend'])"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == ("avx512" if "avx512" in _core.dispatch.available() else "scalar")

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

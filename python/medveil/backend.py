"""Which SIMD backend the C++ kernels use, and how to force one."""

from __future__ import annotations

from typing import Any

from medveil import _core


def cpu_features() -> dict[str, Any]:
    """Return the active kernel backend, the backends available here and the CPU's flags."""
    return {
        "backend": _core.dispatch.active(),
        "available": list(_core.dispatch.available()),
        "cpu": dict(_core.dispatch.cpu()),
    }


def set_backend(name: str) -> None:
    """Force every kernel onto one backend ('scalar', 'avx2', 'avx512') or the best ('auto')."""
    if name == "auto":
        name = _core.dispatch.available()[-1]
    _core.dispatch.set_backend(name)

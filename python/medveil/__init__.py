"""medveil: fast, verifiable de-identification of DICOM archives."""

from __future__ import annotations

from medveil._version import __version__

try:
    from medveil import _core  # noqa: F401  (fail early with a rebuild hint)
except ImportError as exc:  # pragma: no cover - only hit on a broken install
    raise ImportError(
        "medveil's compiled core (medveil._core) could not be imported. Reinstall from the "
        "project root with `pip install .` (a C++17 compiler and CMake >= 3.18 are needed); "
        f"original error: {exc}"
    ) from exc

from medveil.backend import cpu_features, set_backend
from medveil.masking import fix_unused_bits, mask_regions

# The engine and the archive run import pydicom; load them on first use so that the
# kernels stay a light import.
_LAZY = {
    "Deidentifier": "medveil.deid",
    "Policy": "medveil.policy",
    "deidentify_archive": "medveil.archive",
}


def __getattr__(name: str) -> object:
    """Load the engine, policy and archive API on first use."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medveil' has no attribute {name!r}")


__all__ = [
    "Deidentifier",
    "Policy",
    "__version__",
    "cpu_features",
    "deidentify_archive",
    "fix_unused_bits",
    "mask_regions",
    "set_backend",
]

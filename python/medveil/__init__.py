"""medveil: fast, verifiable de-identification of DICOM archives."""

from __future__ import annotations

from medveil._version import __version__

try:
    from medveil import _core as _core  # fail early with a rebuild hint; re-exported
except ImportError as exc:  # pragma: no cover - only hit on a broken install
    raise ImportError(
        "medveil's compiled core (medveil._core) could not be imported. Reinstall from the "
        "project root with `pip install .` (a C++17 compiler and CMake >= 3.18 are needed); "
        f"original error: {exc}"
    ) from exc

from typing import TYPE_CHECKING

from medveil.backend import cpu_features, set_backend

if TYPE_CHECKING:  # what IDEs and type checkers see; at run time __getattr__ loads these
    from medveil.engine.dataset import Deidentifier
    from medveil.pixels.masking import fix_unused_bits, mask_regions
    from medveil.policy.keys import load_secret
    from medveil.policy.schema import Policy
    from medveil.run.archive import deidentify_archive

# Everything but the backend switch loads on first use: importing medveil stays light, and
# the root package sits above every layer without tying them together.
_LAZY = {
    "Deidentifier": "medveil.engine.dataset",
    "Policy": "medveil.policy.schema",
    "deidentify_archive": "medveil.run.archive",
    "load_secret": "medveil.policy.keys",
    "fix_unused_bits": "medveil.pixels.masking",
    "mask_regions": "medveil.pixels.masking",
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
    "load_secret",
    "mask_regions",
    "set_backend",
]

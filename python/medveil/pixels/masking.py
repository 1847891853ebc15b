"""In-place pixel masking kernels of the C++ core, with input normalisation."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any, Union

import numpy as np

from medveil import _core

#: A rectangle (row0, row1, col0, col1) on every frame, or with a frame range
#: (row0, row1, col0, col1, frame0, frame1). Ranges are half-open; they are clipped to the
#: image, so negative starts mean 0 (not Python's from-the-end) and empty ranges are fine.
Region = Union[Sequence[int], np.ndarray]  # noqa: UP007 (a runtime alias on 3.10)

_ALL_FRAMES = np.iinfo(np.int64).max
_INT64 = np.dtype(np.int64)  # native int64 descriptors are this one object


def _uniform_int_rows(items: list[Any]) -> np.ndarray | None:
    """Convert rows that all have the same length (4 or 6) and only hold integers, else None.

    The checks run as C-level iterations (map, set) instead of a Python loop per value:
    thousands of small rectangles otherwise cost more to convert than to mask.
    """
    if not items:
        return None
    lengths = set(map(len, items))
    if lengths != {4} and lengths != {6}:
        return None  # the per-item path names the offending region
    types = set(map(type, itertools.chain.from_iterable(items)))
    if types != {int} and not all(t is int or issubclass(t, np.integer) for t in types):
        return None  # bools, floats, ...: the per-item path raises with the region index
    return np.array(items, dtype=np.int64).reshape(len(items), lengths.pop())


def _core_regions(regions: Iterable[Region] | np.ndarray) -> np.ndarray:
    """Rectangles as a C-contiguous int64 array of shape (n, 4) or (n, 6), as the core takes.

    Four columns stay four (the core applies them to every frame), which spares a copy
    on the per-call path of small masks.
    """
    if isinstance(regions, np.ndarray):
        arr = regions
        if arr.dtype is _INT64 and arr.ndim == 2 and arr.flags.c_contiguous:
            if arr.shape[1] in (4, 6):
                return arr
        if arr.ndim == 1 and arr.size == 0:
            arr = arr.reshape(0, 4)
        if arr.ndim != 2 or arr.shape[1] not in (4, 6):
            raise ValueError(f"regions array must have shape (n, 4) or (n, 6), got {arr.shape}")
        if arr.dtype.kind not in "iu":
            raise TypeError(f"regions must hold integers, got dtype {arr.dtype}")
        return np.ascontiguousarray(arr, dtype=np.int64)
    items = regions if isinstance(regions, list) else list(regions)
    fast = _uniform_int_rows(items)
    if fast is not None:
        return fast
    for i, item in enumerate(items):
        if len(item) not in (4, 6):
            raise ValueError(
                f"region {i} has {len(item)} values; expected (row0, row1, col0, col1) "
                "or (row0, row1, col0, col1, frame0, frame1)"
            )
        for v in item:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"region {i} holds {v!r}; coordinates must be integers")
    out = np.empty((len(items), 6), dtype=np.int64)
    for i, item in enumerate(items):
        out[i, : len(item)] = item
        if len(item) == 4:
            out[i, 4:] = (0, _ALL_FRAMES)
    return out


def regions_array(regions: Iterable[Region] | np.ndarray) -> np.ndarray:
    """Normalise rectangles to the core's C-contiguous int64 array of shape (n, 6)."""
    rows = _core_regions(regions)
    if rows.shape[1] == 6:
        return rows
    full = np.empty((rows.shape[0], 6), dtype=np.int64)
    full[:, :4] = rows
    full[:, 4] = 0
    full[:, 5] = _ALL_FRAMES
    return full


def mask_regions(
    pixels: np.ndarray,
    regions: Iterable[Region] | np.ndarray,
    value: int | float = 0,
    *,
    planar: bool = False,
) -> None:
    """Set every sample inside each rectangle to ``value``, in place, in one pass.

    ``pixels`` is C-contiguous and writable, shaped (rows, cols), (frames, rows, cols),
    (frames, rows, cols, samples) or, with ``planar=True``, (frames, samples, rows, cols).
    """
    if not isinstance(pixels, np.ndarray):
        raise TypeError(f"pixels must be a numpy array, not {type(pixels).__name__}")
    if planar:
        _core.mask.mask_regions(pixels, _core_regions(regions), value, planar=True)
    else:  # pybind11 spends about a microsecond matching a keyword argument
        _core.mask.mask_regions(pixels, _core_regions(regions), value)


def fix_unused_bits(pixels: np.ndarray, bits_stored: int, signed: bool) -> None:
    """Make the bits above ``bits_stored`` zero (unsigned) or sign copies (signed), in place."""
    if not isinstance(pixels, np.ndarray):
        raise TypeError(f"pixels must be a numpy array, not {type(pixels).__name__}")
    if isinstance(bits_stored, bool) or not isinstance(bits_stored, (int, np.integer)):
        raise TypeError(f"bits_stored must be an integer, got {bits_stored!r}")
    _core.mask.fix_unused_bits(pixels, int(bits_stored), bool(signed))

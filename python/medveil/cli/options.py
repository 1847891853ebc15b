"""Command-line options shared by ``medveil deid`` and ``medveil spark-deid``."""

from __future__ import annotations

import argparse


def add_output_options(p: argparse.ArgumentParser, worker: str) -> None:
    """--max-file-size, --file-timeout and --dicomdir (shared with ``medveil spark-deid``)."""
    p.add_argument(
        "--max-file-size",
        type=parse_size,
        metavar="SIZE",
        help="refuse (quarantine) files larger than this, e.g. 512M, 4G (default: a share of "
        f"available memory per {worker})",
    )
    p.add_argument(
        "--file-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="quarantine a file not cleaned within SECONDS plus one second per 10 MB "
        "(default 60; 0 for no limit)",
    )
    p.add_argument(
        "--dicomdir",
        action="store_true",
        help="write a DICOMDIR for the output under OUTPUT/dicomdir/ even when the input "
        "has none (it is written whenever the input has one)",
    )


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes of a size such as 4096, 512K, 64M, 2G (powers of 1024)."""
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = value[-1:] if value[-1:] in _UNITS and value[-1:] else ""
    try:
        number = float(value[: len(value) - len(unit)])
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 512M, 2G)") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"the size must be positive: {text!r}")
    return int(number * _UNITS[unit])

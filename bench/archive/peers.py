"""The Python peers of the archive benchmark, each run as its own process on one folder.

Run: python bench/archive/peers.py {pydicom,deid,dicognito} IN OUT

- ``pydicom``: ``dcmread`` + ``save_as`` for every file (the Python floor: no de-identification).
- ``deid``: pydicom/deid's ``replace_identifiers`` with its default recipe, ``save=True``
  into OUT (it writes each output under its input's base name).
- ``dicognito``: dicognito's own command line (``dicognito.__main__.main``; the 0.19 console
  script is broken: its entry point calls ``main()`` without arguments) with ``-o OUT``.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator


def files(folder: str) -> Iterator[str]:
    """Every file under folder, sorted."""
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for n in sorted(names):
            yield os.path.join(root, n)


def run_pydicom(src: str, dst: str) -> None:
    """Read and write every file with pydicom, keeping the tree."""
    import pydicom

    for path in files(src):
        out = os.path.join(dst, os.path.relpath(path, src))
        os.makedirs(os.path.dirname(out), exist_ok=True)
        pydicom.dcmread(path).save_as(out)


def run_deid(src: str, dst: str) -> None:
    """pydicom/deid with its default recipe, saving into dst."""
    from deid.config import DeidRecipe
    from deid.dicom import replace_identifiers
    from deid.logger import bot

    bot.level = 0  # its per-file messages would dominate the console
    os.makedirs(dst, exist_ok=True)
    replace_identifiers(
        dicom_files=list(files(src)),
        deid=DeidRecipe(),
        save=True,
        output_folder=dst,
        overwrite=True,
    )


def run_dicognito(src: str, dst: str) -> None:
    """dicognito's command line on src, writing to dst."""
    from dicognito.__main__ import main

    main([src, "-o", dst, "--quiet"])


def main(argv: list[str] | None = None) -> int:
    """Command line: PEER IN OUT."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[0] not in ("pydicom", "deid", "dicognito"):
        print(__doc__, file=sys.stderr)
        return 2
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    peer, src, dst = argv
    {"pydicom": run_pydicom, "deid": run_deid, "dicognito": run_dicognito}[peer](src, dst)
    return 0


if __name__ == "__main__":
    sys.exit(main())

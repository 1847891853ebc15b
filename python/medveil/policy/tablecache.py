"""Start-up tables kept from run to run: pickles beside medveil's data, checked by hash.

A run builds the same tables from the same inputs every time (Table E.1-1 under the
policy's options, the safety net, the pixel rule library): ~15 ms of CPU per run. They
are kept in ``medveil/data/__pycache__`` under a key that hashes everything they are
built from: the data files, the source of the modules that build them, the Python and
pydicom versions and pydicom's data dictionary as it is in this process (an application
may have added entries). A table whose key differs, or that cannot be read, is built
afresh; nothing stale is ever used. Like Python's own bytecode caches, nothing is written
under ``PYTHONDONTWRITEBYTECODE`` or where the package folder is read-only. The tables
hold standard data only (no policy's lookup tables, no file's values).
"""

from __future__ import annotations

import hashlib
import marshal
import os
import pickle
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import TypeVar

import pydicom
from pydicom._dicom_dict import DicomDictionary, RepeatersDictionary

T = TypeVar("T")

FORMAT = b"medveil table cache 1"
FOLDER = Path(__file__).resolve().parent.parent / "data" / "__pycache__"
_KEY_SIZE = 32


def _environment() -> bytes:
    """What every table depends on besides its own inputs."""
    # Hashed on every use (~1 ms): an application may change pydicom's dictionary any time.
    h = hashlib.sha256(FORMAT)
    h.update(sys.version.encode())
    h.update(pydicom.__version__.encode())
    h.update(marshal.dumps(DicomDictionary))
    h.update(marshal.dumps(RepeatersDictionary))
    return h.digest()


def source(*modules: ModuleType) -> list[bytes]:
    """The source text of modules, as key parts (a module without a file gives its name)."""
    out = []
    for module in modules:
        path = getattr(module, "__file__", None)
        out.append(Path(path).read_bytes() if path else module.__name__.encode())
    return out


def key_of(parts: Iterable[bytes]) -> bytes:
    """The cache key of a table built from these inputs (length-prefixed, then hashed)."""
    h = hashlib.sha256(_environment())
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.digest()


def cached(name: str, parts: Iterable[bytes], build: Callable[[], T]) -> T:
    """build(), or its value as kept by an earlier run with the same inputs (parts)."""
    key = key_of(parts)
    path = FOLDER / f"{name}.{sys.implementation.cache_tag}.pickle"
    try:
        data = path.read_bytes()
    except OSError:
        data = b""
    if len(data) > _KEY_SIZE and data[:_KEY_SIZE] == key:
        try:
            value: T = pickle.loads(data[_KEY_SIZE:])
        except Exception:  # a torn or foreign file: built afresh and rewritten below
            pass
        else:
            return value
    value = build()
    if not sys.dont_write_bytecode:
        _write(path, key + pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    return value


def _write(path: Path, data: bytes) -> None:
    """Write data to path whole or not at all (a temporary file renamed); errors ignored."""
    try:
        path.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    except OSError:
        return  # a read-only install: no cache, as for bytecode
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass

"""The native road's cache of pixel verdicts (engine/native.py, NativeEngine._verdicts).

A file whose verdict attributes (and Pixel Data length) an earlier file had takes that
file's pixel verdict without the cleaner. Two things make that safe, both tested here:
the key holds everything the slow path reads to reach a plain verdict (recorded on real
files), and a file that differs from a cached one in any such attribute gets its own
verdict, the raw-byte engine's, byte for byte.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from medveil.engine import instance as inst
from medveil.engine import native as native_mod
from medveil.engine.dataset import Deidentifier
from medveil.policy.schema import Policy
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian

from tests.native.roads import SECRET, check_roads, native, pydicom_files, quiet

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "archive"))
from corpus import CT, header, patient  # type: ignore[import-not-found]
from corpus import pixels as set_pixels

PIXEL_DATA = 0x7FE00010


def _slice(
    n: int, edit: Callable[[Dataset], None] | None = None, *, implicit: bool = False
) -> bytes:
    """Slice n of one CT series (64 x 64, 12 bits stored), optionally edited."""
    ds = header(patient(0), CT, "1.2.826.0.1.3680043.10.1311.70", "1.2.3.0", n)
    set_pixels(ds, (np.arange(64 * 64, dtype=np.int16) % 2000).reshape(64, 64))
    ds.BitsStored, ds.HighBit = 12, 11
    ds.Manufacturer = "ACME"
    if edit is not None:
        with quiet():
            edit(ds)
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    buf = io.BytesIO()
    with quiet():  # some variants are invalid values on purpose
        ds.save_as(buf, enforce_file_format=True, implicit_vr=implicit)
    return buf.getvalue()


def _set(**values: Any) -> Callable[[Dataset], None]:
    def edit(ds: Dataset) -> None:
        for kw, v in values.items():
            setattr(ds, kw, v)

    return edit


def _hidden_bits(ds: Dataset) -> None:
    arr = (np.arange(64 * 64, dtype=np.int16) % 2000).reshape(64, 64)
    arr[3, 3] = 0x1234  # above BitsStored: an overlay bit
    ds.PixelData = arr.tobytes()


def _trailing_zeros(ds: Dataset) -> None:
    ds.PixelData = bytes(ds.PixelData) + b"\x00" * 4


def _meta_version(ds: Dataset) -> None:
    ds.file_meta.ImplementationVersionName = "OTHER_1"


# One attribute (or the Pixel Data) differs from the cached slice in each.
VARIANTS: dict[str, Callable[[Dataset], None]] = {
    "burned in YES": _set(BurnedInAnnotation="YES"),
    "burned in odd": _set(BurnedInAnnotation="yes"),
    "burned in NO": _set(BurnedInAnnotation="NO"),
    "modality US": _set(Modality="US"),
    "modality XA": _set(Modality="XA"),
    "SOP class SC": _set(SOPClassUID="1.2.840.10008.5.1.4.1.1.7"),
    "rule fires": _set(SeriesDescription="Dose Report"),
    "rule attribute": _set(Manufacturer="GE MEDICAL SYSTEMS", CommentsOnRadiationDose="DLP"),
    "code meaning": _set(CodeMeaning="IEC Body Dosimetry Phantom"),
    "bits stored": _set(BitsStored=16, HighBit=15),
    "high bit": _set(HighBit=12),
    "signed": _set(PixelRepresentation=0),
    "rows": _set(Rows=32),
    "columns": _set(Columns=128),
    "frames": _set(NumberOfFrames=2),
    "photometric": _set(PhotometricInterpretation="MONOCHROME1"),
    "samples": _set(SamplesPerPixel=3),
    "charset": _set(SpecificCharacterSet="ISO_IR 192"),
    "hidden bits": _hidden_bits,
    "trailing zeros": _trailing_zeros,
    "meta version": _meta_version,
}


# Variants in the samples alone: same key, and the cached verdict's check sends them on.
SAME_KEY = {"hidden bits"}


def _engine(**pixel: Any) -> Deidentifier:
    text = "\n".join(
        f"{k} = {v!r}".replace("'", '"').replace("True", "true") for k, v in pixel.items()
    )
    policy = Policy.from_toml(f"[pixels]\n{text}\n") if pixel else Policy.default()
    return Deidentifier(policy, SECRET)


def _primed(engine: Deidentifier) -> native_mod.NativeEngine:
    """The engine's native road after one slice of the series taught it its verdict."""
    check_roads(engine, _slice(1), "slice 1")
    check_roads(engine, _slice(2), "slice 2")
    road = inst.native_engine_of(engine)
    assert road._verdicts, "the plain slice left no verdict"
    return road


def _key(road: native_mod.NativeEngine, data: bytes) -> tuple[object, ...] | None:
    import medveil._core as core

    res = core.fastpath.run(road.table, [data], None, None, 1, False)[0]
    assert road.engine.pixels is not None
    got = road._verdict_key(data, res, road.engine.pixels)
    return None if got is None else got[0]


def test_the_cache_serves_a_series_without_the_cleaner(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = Deidentifier(Policy.default(), SECRET)
    _primed(engine)
    with quiet(), native(False):
        ref = inst.clean_instance(engine, bytearray(_slice(3)), "input")

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("the cleaner ran on a cached verdict")

    monkeypatch.setattr(engine.pixels, "clean", refuse)
    with quiet(), native(True):
        got = inst.clean_instance(engine, bytearray(_slice(3)), "input")
    assert got.engine == "native", got.native_declined or got.reason
    assert (got.data, got.row, got.pixels, got.actions) == (
        ref.data,
        ref.row,
        ref.pixels,
        ref.actions,
    )


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("implicit", [False, True])
def test_one_attribute_differs_gets_its_own_verdict(name: str, implicit: bool) -> None:
    engine = Deidentifier(Policy.default(), SECRET)
    road = _primed(engine)
    if implicit:
        check_roads(engine, _slice(4, implicit=True), "implicit slice")
    base = _slice(5, implicit=implicit)
    variant = _slice(6, VARIANTS[name], implicit=implicit)
    # Slices of one series share a key; a differing attribute never does.
    assert _key(road, _slice(7, implicit=implicit)) == _key(road, base) is not None
    if name in SAME_KEY:
        assert _key(road, variant) == _key(road, base), name
    else:
        assert _key(road, variant) != _key(road, base), name
    # And whatever its verdict, the road gives the raw-byte engine's result for it.
    check_roads(engine, variant, f"{name} (implicit={implicit})")
    check_roads(engine, base, "base after the variant")


def test_options_are_part_of_the_key() -> None:
    plain = _engine()
    allow = _engine(allow_unmatched_burned_in=True)
    a, b = _primed(plain), _primed(allow)
    data = _slice(3)
    assert _key(a, data) != _key(b, data)


class _Recording(dict):  # type: ignore[type-arg]
    """An element store that notes every tag looked at (iteration notes everything)."""

    seen: set[object]

    def _note(self, key: object) -> None:
        self.seen.add(int(key) if isinstance(key, int) else key)

    def __getitem__(self, key: Any) -> Any:
        self._note(key)
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self._note(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self._note(key)
        return super().__contains__(key)

    def __iter__(self) -> Iterator[Any]:
        self.seen.add("*")
        return super().__iter__()

    def keys(self) -> Any:
        self.seen.add("*")
        return super().keys()

    def items(self) -> Any:
        self.seen.add("*")
        return super().items()

    def values(self) -> Any:
        self.seen.add("*")
        return super().values()

    def pop(self, key: Any, *default: Any) -> Any:
        self._note(key)
        return super().pop(key, *default)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        self._note(key)
        return super().setdefault(key, default)


def _files() -> Iterator[tuple[str, bytes]]:
    for name in pydicom_files():
        yield name, Path(str(get_testdata_file(name))).read_bytes()
    for name, edit in VARIANTS.items():
        yield name, _slice(9, edit)
        yield name + " implicit", _slice(9, edit, implicit=True)


@pytest.mark.parametrize("pixel_text", ["rules", "auto"])
def test_the_key_covers_every_attribute_the_slow_path_reads(
    monkeypatch: pytest.MonkeyPatch, pixel_text: str
) -> None:
    """Record what _prepare's slow path reads; on every plain verdict it is in the key."""
    engine = _engine(pixel_text=pixel_text)
    road = inst.native_engine_of(engine)
    assert road.engine.pixels is not None
    pixels: Any = road.engine.pixels
    stores: list[_Recording] = []
    real_over, real_store = native_mod.dataset_over, native_mod._store

    def recording(store: dict[Any, Any]) -> _Recording:
        rec = _Recording(store)
        rec.seen = set()
        stores.append(rec)
        return rec

    def recording_over(store: dict[Any, Any], *args: Any) -> Any:
        # The top level's store is _store's own (written to by _prepare); the meta's and
        # the output's are only read: a recording copy of them does.
        return real_over(store if isinstance(store, _Recording) else recording(store), *args)

    monkeypatch.setattr(native_mod, "dataset_over", recording_over)
    monkeypatch.setattr(native_mod, "_store", lambda *a: recording(real_store(*a)))
    allowed = set(pixels.verdict_tags()) | set(pixels.verdict_presence)
    allowed |= {PIXEL_DATA, 0x00080018}
    plain = 0
    for label, data in _files():
        road._verdicts.clear()
        stores.clear()
        with quiet():
            check_roads(engine, data, label)
            road._verdicts.clear()
            stores.clear()
            out = road.apply(bytearray(data))
        if not road._verdicts:
            continue  # no plain verdict kept: nothing reused, whatever was read
        plain += 1
        # The meta view and the top-level view (the output's view reads nothing here).
        seen = set().union(*(s.seen for s in stores[:2]))
        assert "*" not in seen, label
        extra = {hex(t) for t in seen if isinstance(t, int) and t not in allowed}
        extra |= {t for t in seen if isinstance(t, str)} - {"*"}
        assert not extra, (label, sorted(extra))
        assert isinstance(out, native_mod.NativeOutcome), (label, out)
    assert plain >= 10, plain

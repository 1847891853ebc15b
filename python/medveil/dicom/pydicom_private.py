"""The few pydicom internals medveil relies on, in one place, each with the reason.

pydicom's public API decodes an element when it is read; the engines must look at, copy
and replace elements *without* decoding them (speed, and bytes kept verbatim), which only
its internals allow. tests/dicom/test_pydicom_private.py fails loudly when a pydicom
release changes any of them.
"""

from __future__ import annotations

from collections.abc import MutableMapping

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import BaseTag

Element = DataElement | RawDataElement
#: A value as a RawDataElement holds it: views of an input buffer are kept as views.
RawValue = bytes | bytearray | memoryview | None
#: RawDataElement's fields as a tuple, in RAW_FIELDS order (what :func:`raw_tuple` takes).
RawTuple = tuple[BaseTag, str | None, int, RawValue, int, bool, bool, bool, bool]

#: RawDataElement's fields, in pydicom 3.0's order; construction is by keyword only.
RAW_FIELDS = (
    "tag",
    "VR",
    "length",
    "value",
    "value_tell",
    "is_implicit_VR",
    "is_little_endian",
    "is_raw",
    "is_buffered",
)
# raw_tuple builds elements by position; a pydicom that reorders the fields must stop
# medveil at import, not make elements whose VR is a length.
if RawDataElement._fields != RAW_FIELDS:  # pragma: no cover - a pydicom that reorders them
    raise ImportError("pydicom's RawDataElement fields changed: medveil needs them in order")
_tuple_new = tuple.__new__


def elements(ds: Dataset) -> MutableMapping[BaseTag, Element]:
    """The dataset's element store: read and replaced without decoding (``Dataset._dict``)."""
    return ds._dict


def element(ds: Dataset, tag: int) -> Element | None:
    """One top-level element as stored, raw or decoded, or None; never decodes it."""
    return ds._dict.get(BaseTag(tag))


def character_set(ds: Dataset) -> str | list[str]:
    """The Python codecs of the dataset's Specific Character Set (``Dataset._character_set``)."""
    return ds._character_set


def raw_element(
    tag: int,
    vr: str | None,
    length: int,
    value: bytes | bytearray | memoryview | None,
    *,
    value_tell: int = 0,
    implicit: bool,
    little: bool,
    is_raw: bool = True,
    is_buffered: bool = False,
) -> RawDataElement:
    """A RawDataElement built by field name, so a reordered tuple cannot go unnoticed."""
    return RawDataElement(
        tag=BaseTag(tag),
        VR=vr,
        length=length,
        value=value,  # type: ignore[arg-type]  # views are kept as views: no copy of pixels
        value_tell=value_tell,
        is_implicit_VR=implicit,
        is_little_endian=little,
        is_raw=is_raw,
        is_buffered=is_buffered,
    )


def forget_private_blocks(ds: Dataset) -> None:
    """Drop pydicom's cache of private blocks by creator (``Dataset._private_blocks``).

    pydicom finds a creator's block once and keeps it; the engines remove private elements
    straight from the store, so a kept block could name a creator that is gone.
    """
    blocks = ds._private_blocks
    if blocks:
        blocks.clear()


def raw_tuple(fields: RawTuple) -> RawDataElement:
    """A RawDataElement from its fields in RAW_FIELDS order: the engines' hot-loop constructor.

    It skips the namedtuple's Python-level ``__new__`` (half the cost of a positional
    call, a third of a keyword one); the field order is checked when this module loads.
    """
    return _tuple_new(RawDataElement, fields)


class _View(Dataset):
    """A Dataset over given elements whose character set is worked out once, not per value.

    pydicom reads SpecificCharacterSet again on every decode (``Dataset._character_set``);
    the raw engine decodes many values of one view, whose character set never changes.
    """

    @property
    def _character_set(self) -> str | list[str]:
        cached = self.__dict__.get("_charsets")
        if cached is None:
            cached = Dataset._character_set.fget(self)  # type: ignore[attr-defined]
            self.__dict__["_charsets"] = cached
        return cached  # type: ignore[no-any-return]


def dataset_over(
    store: dict[BaseTag, RawDataElement] | dict[BaseTag, Element],
    implicit: bool = False,
    file_meta: FileMetaDataset | None = None,
) -> Dataset:
    """A Dataset whose element store *is* ``store`` (not a copy), read as (Implicit) VR LE.

    The elements stay raw until public access decodes them, as after dcmread. The instance
    state is copied from a template: Dataset.__init__ sets a dozen attributes through its
    keyword-checking __setattr__, which costs more than the rest of the view, and
    ``file_meta`` is set the same way, past __setattr__'s checks.
    """
    view = _View.__new__(_View)
    state = view.__dict__
    state.update(_VIEW_STATE[implicit])
    state["_dict"] = store
    state["_private_blocks"] = {}
    state["_pixel_array_opts"] = {"use_pdh": False}
    state["_pixel_id"] = {}
    if file_meta is not None:
        state["file_meta"] = file_meta
    return view


def _view_state(implicit: bool) -> dict[str, object]:
    """A fresh Dataset's instance state, read as (Implicit) VR Little Endian, minus its store."""
    template = Dataset()
    template.set_original_encoding(implicit, True, None)
    return {k: v for k, v in template.__dict__.items() if k != "_dict"}


_VIEW_STATE = {implicit: _view_state(implicit) for implicit in (False, True)}


def decodable_syntaxes() -> list[str]:
    """Transfer syntaxes pydicom has a pixel decoder for (``_PIXEL_DATA_DECODERS``).

    pydicom has no public list of them; the gateway offers exactly these.
    """
    from pydicom.pixels.decoders.base import _PIXEL_DATA_DECODERS

    return [str(uid) for uid in _PIXEL_DATA_DECODERS]

"""Regression tests for what fuzzing the native road found (tests/native/fuzzing.py).

Each test builds the input that showed the problem and checks the native road against
clean_instance with the road off (tests/native/roads.check_roads), byte for byte.
"""

from __future__ import annotations

import io
import struct

from medveil.engine.dataset import Deidentifier
from medveil.policy.schema import Policy
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from tests.native.fuzzing import ct_dataset
from tests.native.roads import SECRET, Coverage, check_roads


def _base(description: str) -> Dataset:
    ds = ct_dataset()
    ds.PatientName = "SMITH^JOHN"
    ds.PatientID = "P1"
    ds.StudyDescription = description  # a descriptor: cleaned of the file's names
    return ds


def _bytes(ds: Dataset, implicit: bool) -> bytes:
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _un_name_in_private_sequence(hidden: str, description: str) -> bytes:
    """A private sequence whose item holds PatientName written with VR UN (explicit VR)."""
    ds = _base(description)
    item = Dataset()
    item.add_new(0x00100010, "PN", hidden)
    ds.private_block(0x0029, "ZQX PRIVATE", create=True).add_new(0x10, "SQ", Sequence([item]))
    data = _bytes(ds, implicit=False)
    n = len(hidden)
    # pydicom writes the name as PN: rewrite its header as UN, the lengths around it grown.
    old = (
        b"SQ\x00\x00"
        + struct.pack("<I", 16 + n)
        + b"\xfe\xff\x00\xe0"
        + struct.pack("<I", 8 + n)
        + b"\x10\x00\x10\x00PN"
        + struct.pack("<H", n)
    )
    new = (
        b"SQ\x00\x00"
        + struct.pack("<I", 20 + n)
        + b"\xfe\xff\x00\xe0"
        + struct.pack("<I", 12 + n)
        + b"\x10\x00\x10\x00UN\x00\x00"
        + struct.pack("<I", n)
    )
    assert data.count(old) == 1
    return data.replace(old, new)


def _name_in_removed_sequence(hidden: str, description: str, seq: int) -> bytes:
    """Implicit VR: a name in a sequence the policy removes unwalked (tag new to the core)."""
    ds = _base(description)
    item = Dataset()
    item.add_new(0x0040A123, "PN", hidden)  # Person Name: met nowhere else in the file
    ds.add_new(seq, "SQ", Sequence([item]))
    return _bytes(ds, implicit=True)


def test_name_written_as_un_is_part_of_the_identity() -> None:
    # Two files alike but for a name hidden as UN in a private sequence, which the raw-byte
    # engine's identity reads: the second file's descriptor holds that name. The native
    # road once keyed its cache without it and reused the first file's "keep": its output
    # then held the name (the post-check quarantined what the raw-byte engine cleaned).
    engine = Deidentifier(Policy.default(), SECRET)
    cov = Coverage()
    check_roads(engine, _un_name_in_private_sequence("ZQXALICE", "ZQXBOBB_ SCAN"), "a", cov)
    check_roads(engine, _un_name_in_private_sequence("ZQXBOBB_", "ZQXBOBB_ SCAN"), "b", cov)
    assert cov.native >= 1, cov.reasons  # the road did take the first file


def test_implicit_name_under_a_removed_sequence_is_part_of_the_identity() -> None:
    for seq in (0x00081120, 0x00101002):  # Referenced Patient, Other Patient IDs
        engine = Deidentifier(Policy.default(), SECRET)
        cov = Coverage()
        first = _name_in_removed_sequence("ZQXALICE", "ZQXBOBB_ SCAN", seq)
        second = _name_in_removed_sequence("ZQXBOBB_", "ZQXBOBB_ SCAN", seq)
        check_roads(engine, first, f"{seq:08x} a", cov)
        check_roads(engine, second, f"{seq:08x} b", cov)
        assert cov.native >= 1, cov.reasons


def _with_private_un_sequence(inner_tag: int) -> bytes:
    """A private UN sequence of undefined length (read as Implicit VR) whose item holds
    `inner_tag` with an undefined length: an empty item and a sequence delimiter."""
    ds = _base("CHEST")
    data = _bytes(ds, implicit=False)
    inner = (
        struct.pack("<HHI", inner_tag >> 16, inner_tag & 0xFFFF, 0xFFFFFFFF)
        + b"\xfe\xff\x00\xe0\x00\x00\x00\x00\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    )
    item = b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + inner + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
    block = (
        b"\x29\x00\x10\x00LO\x04\x00ZQX "
        + b"\x29\x00\x10\x10UN\x00\x00\xff\xff\xff\xff"
        + item
        + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    )
    return data + block  # group 0029 follows every element of _base


def test_undefined_length_inside_a_removed_un_sequence_is_declined() -> None:
    # The raw-byte engine refuses an element with no VR in the file and an undefined
    # length unless the dictionary makes it SQ or UN, wherever it is; the native road
    # checked only the elements it walked, and wrote the file whose private UN sequence
    # (removed whole) held such a Patient ID.
    from medveil.engine import instance as inst
    from medveil.engine.native import NativeOutcome

    from tests.native.fuzzing import check_direct

    engine = Deidentifier(Policy.default(), SECRET)
    cov = Coverage()
    check_roads(engine, _bytes(_base("CHEST"), implicit=False), "taught", cov)
    assert cov.native == 1, cov.reasons  # the patient's answers are known to the road
    hostile = _with_private_un_sequence(0x00100020)  # Patient ID: LO
    check_roads(engine, hostile, "hostile", cov)
    assert check_direct(engine, hostile) == []
    got = inst.native_engine_of(engine).apply(bytearray(hostile))
    assert got == "undefined length outside a sequence"
    # A private data element, or a tag the dictionary does not define, reads as UN there:
    # the road may write the file (once Python taught it the tag).
    for tag in (0x00111234, 0x00420099):
        fine = _with_private_un_sequence(tag)
        check_roads(engine, fine, f"{tag:08x}", cov)
        assert check_direct(engine, fine) == []
        assert isinstance(inst.native_engine_of(engine).apply(bytearray(fine)), NativeOutcome)


def test_sop_instance_uid_past_a_short_length_is_declined() -> None:
    # Implicit VR lets a SOP Instance UID run past 65535 bytes once its values are remapped
    # (1600 UIDs of 45 characters); the file meta's copy has a 2-byte length. The native
    # road wrapped that length and wrote a broken meta (the post-check then quarantined it
    # with another reason than the raw-byte engine, which hands such a file on).
    from medveil.engine import instance as inst
    from pydicom.uid import ImplicitVRLittleEndian

    from tests.native.fuzzing import check_direct

    engine = Deidentifier(Policy.default(), SECRET)
    cov = Coverage()
    ds = _base("CHEST")
    check_roads(engine, _bytes(ds, implicit=True), "taught", cov)
    ds.SOPInstanceUID = "\\".join(["1.2.3.4.5"] * 1600)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    hostile = _bytes(ds, implicit=True)
    # The meta's copy back to the taught file's one UID: its template is then known, and
    # the road meets the long list only when it encodes the output.
    at = hostile.index(b"\x02\x00\x03\x00UI", 132)
    size = struct.unpack_from("<H", hostile, at + 6)[0]
    one = b"1.2.3.4.5\x00"
    hostile = hostile[: at + 6] + struct.pack("<H", len(one)) + one + hostile[at + 8 + size :]
    group = struct.unpack_from("<I", hostile, 140)[0] + len(one) - size
    hostile = hostile[:140] + struct.pack("<I", group) + hostile[144:]
    check_roads(engine, hostile, "long UID list", cov)
    assert check_direct(engine, hostile) == []
    got = inst.native_engine_of(engine).apply(bytearray(hostile))
    assert got == "dataset: value too long for its VR"  # found while encoding the output
    assert cov.native >= 1, cov.reasons


def test_private_creator_too_long_once_padded_is_declined() -> None:
    # Found by the fuzzer: an explicit private creator of 65535 bytes (odd). The raw-byte
    # engine re-encodes every creator padded to even before its verdicts, which no longer
    # fits a 2-byte length, and hands the file on; the native road removed the block and
    # wrote the file. (The structure check quarantines odd lengths before either road,
    # so only a direct call met it; the roads must agree all the same.)
    from medveil.engine import instance as inst

    from tests.native.fuzzing import check_direct

    engine = Deidentifier(Policy.default(), SECRET)
    cov = Coverage()
    plain = _bytes(_base("CHEST"), implicit=False)
    check_roads(engine, plain, "taught", cov)
    assert cov.native == 1, cov.reasons
    for size, answer in ((65535, "value too long for its VR"), (65534, None)):
        creator = b"\x29\x00\x10\x00LO\xff\xff"[:6] + struct.pack("<H", size) + b"Z" * size
        hostile = plain + creator  # group 0029 follows every element of _base
        assert check_direct(engine, hostile) == []
        got = inst.native_engine_of(engine).apply(bytearray(hostile))
        if answer is None:
            assert not isinstance(got, (str, Exception)), got  # an even one is the road's
        else:
            assert got == answer
        check_roads(engine, hostile, f"creator of {size} bytes", cov)


def test_cached_keep_of_a_local_code_meaning_is_declined() -> None:
    # The value cache holds the decision layer's act() answers; for a CodeMeaning beside a
    # local coding scheme Python's code_meaning() then cleans a kept value further. A
    # policy whose CodeMeaning answer reads the value (cached) must not reuse a cached
    # "keep" there. The table entry is set by hand: no preset gives such an answer yet.
    from medveil._core import fastpath
    from medveil.engine import instance as inst
    from medveil.engine.native import K_CACHE, K_KEEP, MISS, OK

    from tests.native.fuzzing import _write

    engine = Deidentifier(Policy.default(), SECRET)

    def item_file(scheme: str) -> bytes:
        ds = _base("CHEST")
        item = Dataset()
        item.CodeValue = "X1"
        item.CodingSchemeDesignator = scheme
        item.CodeMeaning = "LEFT KNEE"
        ds.ProcedureCodeSequence = Sequence([item])
        return _write(ds, False)

    standard, local = item_file("SRT"), item_file("99LOCAL")
    cov = Coverage()
    check_roads(engine, standard, "taught", cov)
    assert cov.native == 1, cov.reasons
    table = inst.native_engine_of(engine).table
    cached = (K_CACHE, -1, [], b"", "")
    (entry,) = table.add_tag(0x00080104, "", "LO", True, [("LO", True, cached, cached)])
    first = fastpath.run(table, [standard, local], None, None, 1, False)
    for res, data in zip(first, (standard, local), strict=True):
        assert res[0] == MISS
        for got_entry, empty, vstart, vend in res[11].tolist():
            assert got_entry == entry
            table.cache_put(entry, bool(empty), res[12], data[vstart:vend], K_KEEP, -1, [], b"")
    again = fastpath.run(table, [standard, local], None, None, 1, False)
    assert again[0][0] == OK, again[0][1]
    assert (again[1][0], again[1][1]) == (1, "local code meaning")


def _meta_vr_changed(data: bytes, tag: int, vr: bytes) -> bytes:
    """The file with one file meta element's VR bytes replaced (both are short-form VRs)."""
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    at = data.index(head, 132)
    assert data[at + 4 : at + 6] in (b"UI", b"SH", b"AE"), "a short-form VR to replace"
    return data[: at + 4] + vr + data[at + 6 :]


def _raw_outcome(engine: Deidentifier, data: bytes) -> tuple[object, ...]:
    """What the raw-byte engine makes of one file: (bytes, report) or the error."""
    from medveil.engine import instance as inst

    from tests.native.roads import quiet

    with quiet():
        try:
            out = inst.raw_engine_of(engine).apply(bytearray(data))
        except Exception as exc:
            return (type(exc).__name__, str(exc))
    return (b"".join(bytes(p) for p in out.parts), out.report.taken)


def test_file_meta_template_is_keyed_by_each_elements_vr() -> None:
    # Two files alike but for the VR of one file meta element. The walk removes a meta
    # element whose VR its tag does not allow (X-vr-mismatch), so the output meta and its
    # report differ. The meta template caches (raw-byte engine and core) were keyed by
    # tags and values only: after the first file, the second took the first's template
    # (a "U" where a fresh engine said "X-vr-mismatch", or an output where a fresh engine
    # found no Media Storage SOP Class). Every road must answer as a fresh one does.
    from medveil.engine import instance as inst
    from medveil.engine.native import NativeOutcome

    from tests.native.roads import quiet

    ds = _base("CHEST")
    plain = _bytes(ds, implicit=False)
    for tag in (0x00020002, 0x00020003, 0x00020012, 0x00020013):
        for vr in (b"LO", b"CS"):
            label = f"({tag >> 16:04x},{tag & 0xFFFF:04x}) as {vr.decode()}"
            changed = _meta_vr_changed(plain, tag, vr)
            fresh = _raw_outcome(Deidentifier(Policy.default(), SECRET), changed)
            warm_engine = Deidentifier(Policy.default(), SECRET)
            check_roads(warm_engine, plain, "plain")  # teaches both caches this meta
            with quiet():
                taught = inst.native_engine_of(warm_engine).apply(bytearray(plain))
            assert isinstance(taught, NativeOutcome), label
            assert _raw_outcome(warm_engine, changed) == fresh, label
            with quiet():
                nat = inst.native_engine_of(warm_engine).apply(bytearray(changed))
            if isinstance(nat, NativeOutcome):
                assert (b"".join(nat.parts), nat.report.taken) == fresh, label
            check_roads(warm_engine, changed, label)

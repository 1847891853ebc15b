"""The core's native road as an API: argument checks, damaged input, threads, hashes.

Run under ASan + UBSan too (.ci/sanitize): truncated and bit-flipped files must end in a
reason, never in a read outside the buffer.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
import pytest
from medveil._core import fastpath
from medveil.engine import instance as inst
from medveil.engine.dataset import Deidentifier
from medveil.engine.native import DECLINED, MISS, OK, NativeEngine, NativeOutcome
from medveil.policy.schema import Policy
from pydicom.data import get_testdata_file

from tests.native.roads import SECRET, quiet


@pytest.fixture(scope="module")
def taught() -> tuple[NativeEngine, bytes]:
    """A native road that has learned CT_small (the second pass writes it natively)."""
    engine = Deidentifier(Policy.default(), SECRET)
    data = Path(str(get_testdata_file("CT_small.dcm"))).read_bytes()
    with quiet():
        inst.clean_instance(engine, bytearray(data), "input")
        assert inst.clean_instance(engine, bytearray(data), "input").engine == "native"
    return inst.native_engine_of(engine), data


def _table() -> fastpath.Table:
    return fastpath.Table(SECRET, np.array([1, 2], np.uint32), [], [], [], [b""], [], -1)


def test_table_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        fastpath.Table(b"short", np.array([], np.uint32), [], [], [], [], [], -1)
    with pytest.raises(ValueError, match="sorted"):
        fastpath.Table(SECRET, np.array([2, 1], np.uint32), [], [], [], [], [], -1)
    with pytest.raises(ValueError, match="syntax kind"):
        fastpath.Table(SECRET, np.array([], np.uint32), [], [], [], [], [("1.2", 7)], -1)
    table = _table()
    with pytest.raises(ValueError, match="two-letter VR"):
        table.add_tag(0x00100010, "PNX", "", False, [])
    with pytest.raises(ValueError, match="kind"):
        table.add_tag(
            0x00100010, "", "PN", False, [("PN", False, (9, -1, [], b"", ""), (0, -1, [], b"", ""))]
        )
    with pytest.raises(ValueError, match="ascending"):
        table.add_marks([(2, b""), (1, b"")])
    with pytest.raises(ValueError, match="fingerprint"):
        table.cache_put(0, False, b"x", b"", 1, -1, [], b"")


def test_run_checks_its_arguments() -> None:
    table = _table()
    with pytest.raises(TypeError, match="bytes-like"):
        fastpath.run(table, ["not bytes"])
    with pytest.raises(ValueError, match="one id per input"):
        fastpath.run(table, [b"x"], [0, 1])
    with pytest.raises(ValueError, match="one entry"):
        fastpath.run(table, [b"x"], None, [None, None])
    with pytest.raises(ValueError, match="threads"):
        fastpath.run(table, [b"x"], threads=-1)


def test_not_dicom_is_declined_with_a_reason() -> None:
    (res,) = fastpath.run(_table(), [b"\x00" * 10])
    assert res[0] == DECLINED and res[1] == "no preamble"
    assert res[2] == b"" and res[3] == b""


def test_output_hash_is_the_outputs(taught: tuple[NativeEngine, bytes]) -> None:
    native, data = taught
    with quiet():
        out = native.apply(bytearray(data))
    assert isinstance(out, NativeOutcome)
    joined = b"".join(bytes(p) for p in out.parts)
    assert out.sha256 == hashlib.sha256(joined).hexdigest()


def test_threads_give_the_same_outputs(taught: tuple[NativeEngine, bytes]) -> None:
    native, data = taught
    bufs = [bytearray(data) for _ in range(8)]
    with quiet():
        one = native.apply_batch(bufs, threads=1)
        four = native.apply_batch([bytearray(data) for _ in range(8)], threads=4)
    assert all(isinstance(o, NativeOutcome) for o in one + four)
    digests = {o.sha256 for o in one + four}  # type: ignore[union-attr]
    assert len(digests) == 1


def test_damaged_files_end_in_a_reason(taught: tuple[NativeEngine, bytes]) -> None:
    native, data = taught
    rng = random.Random(21)
    damaged: list[bytes] = [data[:n] for n in range(0, len(data), 97)]
    for _ in range(300):
        buf = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(128, 2000)] = rng.randrange(256)
        damaged.append(bytes(buf))
    results = fastpath.run(native.table, damaged, None, None, 2, False)
    assert len(results) == len(damaged)
    for res in results:
        assert res[0] in (OK, DECLINED, MISS)
        if res[0] == DECLINED:
            assert isinstance(res[1], str) and res[1]
    # A value cut short (here the pixel data, the last element) ends the walk.
    cut = fastpath.run(native.table, [data[:-1], data[:-2], data[:-1000]], None, None, 1, False)
    assert [r[:2] for r in cut] == [(DECLINED, "value runs past the end")] * 3

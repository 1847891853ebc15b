"""Forward mode: a destination that is down, then comes back, gets everything exactly once."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pydicom
import pytest

pytest.importorskip("pynetdicom")

from medveil.net.gateway import Forwarder, _is_success, _permanent_failure, iter_spool
from pynetdicom import AE, AllStoragePresentationContexts, evt

from .helpers import assert_no_phi, free_port, tree
from .test_store import send


class Destination:
    """A research PACS stand-in: a Storage SCP that records every instance it receives."""

    def __init__(self, port: int, status: int = 0x0000) -> None:
        self.port = port
        self.status = status
        self.received: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.ae = AE(ae_title="RESEARCH")
        for cx in AllStoragePresentationContexts:
            self.ae.add_supported_context(
                cx.abstract_syntax, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]
            )
        self.server = self.ae.start_server(
            ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)]
        )

    def _store(self, event) -> int:
        with self._lock:
            self.received.append(
                (str(event.request.AffectedSOPInstanceUID), event.encoded_dataset(False))
            )
        return self.status

    def stop(self) -> None:
        """Stop listening."""
        self.server.shutdown()


def dataset_part(data: bytes) -> bytes:
    """The bytes after the file meta of a Part 10 file."""
    meta_len = int.from_bytes(data[140:144], "little")
    return data[144 + meta_len :]


def wait_until(cond, timeout: float = 60.0) -> None:
    """Poll cond() until it is true or fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_destination_down_then_back_nothing_lost_nothing_duplicated(start_gateway, demo, tmp_path):
    files, reference = demo
    port = free_port()
    spool = tmp_path / "spool"
    gw, log = start_gateway(
        forward=("127.0.0.1", port, "RESEARCH"), spool=spool, retry_min=0.05, retry_max=0.3
    )
    # Destination down: every instance is still acknowledged, because it is durably spooled.
    assert send(gw.port, files) == [0] * len(files)
    assert tree(spool) == reference
    log.wait_for("forward-retry", count=2)
    dest = Destination(port)
    try:
        wait_until(lambda: not list(iter_spool(spool)) and len(dest.received) >= len(files))
        time.sleep(0.5)  # anything sent twice would show up now
        counts = Counter(uid for uid, _ in dest.received)
        assert len(dest.received) == len(files)
        assert set(counts.values()) == {1}
        by_uid = {
            str(pydicom.dcmread(pydicom.filebase.DicomBytesIO(d)).SOPInstanceUID): d
            for d in reference.values()
        }
        assert counts.keys() == by_uid.keys()
        for uid, body in dest.received:
            assert body == dataset_part(by_uid[uid])
    finally:
        dest.stop()
    assert sum(int(e["count"]) for e in log.events("forwarded")) == len(files)
    assert_no_phi(log.text, files)


def test_destination_failure_statuses_keep_the_instance(tmp_path, demo):
    """A transient refusal keeps the file for later; a permanent one moves it aside."""
    _files, reference = demo
    spool = tmp_path / "spool"
    rel, data = next(iter(reference.items()))
    (spool / rel).parent.mkdir(parents=True)
    (spool / rel).write_bytes(data)
    port = free_port()
    from .helpers import CapturedLog

    log = CapturedLog()
    dest = Destination(port, status=0xA700)
    try:
        fwd = Forwarder(spool, ("127.0.0.1", port, "RESEARCH"), ae_title="MEDVEIL", log=log)
        sent, transient = fwd._send(list(iter_spool(spool)))
        assert (sent, transient) == (0, True)
        assert (spool / rel).read_bytes() == data
        dest.status = 0xA900
        sent, transient = fwd._send(list(iter_spool(spool)))
        assert (sent, transient) == (0, False)
        assert not (spool / rel).exists()
        assert (spool / ".rejected" / rel).read_bytes() == data
        assert not list(iter_spool(spool))
    finally:
        dest.stop()
    assert len(dest.received) == 2


@pytest.mark.parametrize(
    ("status", "success", "permanent"),
    [
        (0x0000, True, False),
        (0xB000, True, False),
        (0xB007, True, False),
        (0xA700, False, False),
        (0xA7FF, False, False),
        (0x0213, False, False),
        (0xA900, False, True),
        (0xC000, False, True),
        (0x0122, False, True),
    ],
)
def test_destination_status_classes(status, success, permanent):
    assert _is_success(status) is success
    assert _permanent_failure(status) is permanent


def test_spool_survives_a_gateway_restart(start_gateway, demo, tmp_path):
    """Instances acknowledged while the destination was down go out after a restart."""
    files, reference = demo
    port = free_port()
    spool = tmp_path / "spool"
    forward = ("127.0.0.1", port, "RESEARCH")
    gw, _log = start_gateway(forward=forward, spool=spool, retry_min=0.05, retry_max=0.2)
    assert send(gw.port, files) == [0] * len(files)
    gw.stop()
    assert tree(spool) == reference
    dest = Destination(port)
    try:
        _gw2, log2 = start_gateway(forward=forward, spool=spool, retry_min=0.05, retry_max=0.2)
        wait_until(lambda: not list(iter_spool(spool)) and len(dest.received) >= len(files))
        time.sleep(0.5)
        expected = [
            str(pydicom.dcmread(pydicom.filebase.DicomBytesIO(d)).SOPInstanceUID)
            for d in reference.values()
        ]
        assert sorted(uid for uid, _ in dest.received) == sorted(expected)
    finally:
        dest.stop()
    assert sum(int(e["count"]) for e in log2.events("forwarded")) == len(files)

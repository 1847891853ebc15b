"""Concurrency and shutdown: a burst over 4 associations, draining, SIGTERM of `medveil serve`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("pynetdicom")

from medveil.net.gateway import STATUS_OUT_OF_RESOURCES
from medveil.run.archive import deidentify_archive

from .helpers import SECRET, demo_policy, free_port, tree, write_burst
from .test_store import scu, send


def test_burst_of_200_from_4_concurrent_associations(start_gateway, demo, tmp_path):
    files, _reference = demo
    burst = write_burst(tmp_path / "burst", files[0], 200)
    deidentify_archive(
        tmp_path / "burst", tmp_path / "ref", policy=demo_policy(), secret=SECRET, workers=2
    )
    reference = tree(tmp_path / "ref")
    # A small memory budget so that senders really wait for each other.
    gw, log = start_gateway(workers=2, max_pending_bytes=64 << 10)
    results: dict[int, list[int]] = {}

    def sender(k: int) -> None:
        results[k] = send(gw.port, burst[k::4], aet=f"SCU{k}")

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert sorted(results) == [0, 1, 2, 3]
    assert all(s == [0] * 50 for s in results.values())
    assert tree(gw.config.store) == reference
    assert len(reference) == 200
    assert len({e["calling_aet"] for e in log.events("association")}) == 4
    assert gw.budget.used == 0


def test_stop_finishes_in_flight_instances_and_refuses_the_rest(start_gateway, demo, tmp_path):
    files, _reference = demo
    burst = write_burst(tmp_path / "burst", files[0], 60)
    gw, log = start_gateway(workers=1)
    statuses: list[int | None] = []

    def sender() -> None:
        assoc = scu().associate("127.0.0.1", gw.port, ae_title="MEDVEIL")
        assert assoc.is_established
        for f in burst:
            if not assoc.is_established:
                break
            rsp = assoc.send_c_store(f)
            statuses.append(int(rsp.Status) if "Status" in rsp else None)
        if assoc.is_established:
            assoc.release()

    t = threading.Thread(target=sender)
    t.start()
    log.wait_for("stored", count=5)
    gw.stop()
    t.join(60)
    stored = tree(gw.config.store)
    acknowledged = sum(1 for s in statuses if s == 0)
    # Acknowledged means durable: exactly the acknowledged instances are in the store.
    assert 5 <= acknowledged == len(stored) < len(burst)
    assert set(statuses) <= {0, STATUS_OUT_OF_RESOURCES, None}
    assert not [p for p in Path(gw.config.store).rglob("*") if p.name.endswith(".tmp")]
    assert log.events("shutdown")[-1]["stage"] == "done"
    # Nothing listens any more.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", gw.port), timeout=5).close()


def test_medveil_serve_exits_cleanly_on_sigterm(demo, tmp_path):
    files, reference = demo
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET.hex())
    secret_file.chmod(0o600)
    port = free_port()
    store = tmp_path / "store"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "medveil",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--secret-file",
            str(secret_file),
            "--store",
            str(store),
            "--workers",
            "1",
            "--allow",
            "TESTSCU@127.0.0.1",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[dict] = []
    reader = threading.Thread(
        target=lambda: lines.extend(json.loads(line) for line in proc.stderr if line.strip())
    )
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not any(e["event"] == "listening" for e in list(lines)):
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.05)
        ct_mr = [f for f in files if f.parent.name in ("ct", "mr")]
        assert send(port, ct_mr) == [0] * len(ct_mr)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(10)
        proc.stderr.close()
    stored = tree(store)
    assert len(stored) == len(ct_mr)
    assert all(reference[rel] == data for rel, data in stored.items())
    events = [e["event"] for e in lines]
    assert events.count("stored") == len(ct_mr)
    assert lines[-1]["event"] == "shutdown" and lines[-1]["stage"] == "done"


def test_a_dead_worker_is_replaced_and_nothing_is_lost(start_gateway, demo):
    files, reference = demo
    gw, log = start_gateway(workers=1)
    assert send(gw.port, files[:1]) == [0]
    for pid in list(gw._pool._processes):
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)  # let the pool notice
    assert send(gw.port, files) == [0] * len(files)
    assert tree(gw.config.store) == reference
    assert len(log.events("worker-pool-restarted")) == 1

"""`medveil serve` killed with -9 mid-association: acknowledged means stored, no orphans."""

from __future__ import annotations

import gc
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest

pytest.importorskip("pynetdicom")

from medveil.policy.keys import Keyed
from medveil.run.archive import deidentify_archive
from medveil.run.demo import write_copies, write_demo_archive

from ..gateway.helpers import demo_policy, free_port
from ..gateway.test_store import scu
from .helpers import SECRET, alive, children, wait_until


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            out.append(child)
            todo.append(child)
    return out


def test_kill_9_of_serve_mid_association(tmp_path: Path) -> None:
    """Every instance acknowledged before the kill is stored, whole, exactly where the
    file-based run puts it; the forkserver and workers die with the gateway."""
    ct = next(p for p in write_demo_archive(tmp_path / "demo") if p.parent.name == "ct")
    burst = write_copies(tmp_path / "burst", ct, 400)
    ref = tmp_path / "ref"
    deidentify_archive(tmp_path / "burst", ref, policy=demo_policy(), secret=SECRET, workers=2)
    db = sqlite3.connect(ref / ".medveil" / "catalog.sqlite")
    where = dict(db.execute("SELECT source_key, path FROM instances"))
    keyed = Keyed(SECRET)
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET.hex())
    secret_file.chmod(0o600)
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(f'[pixels]\nrules = ["{demo_policy().pixel_rule_files[0]}"]\n')
    store, port = tmp_path / "store", free_port()
    cmd = [sys.executable, "-m", "medveil", "serve", "--port", str(port), "--workers", "2"]
    cmd += ["--secret-file", str(secret_file), "--policy", str(policy_file)]
    cmd += ["--store", str(store), "--allow", "TESTSCU@127.0.0.1"]
    proc = subprocess.Popen(
        cmd,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or []), daemon=True)
    reader.start()
    acked: list[Path] = []
    try:
        assert wait_until(lambda: any('"listening"' in x for x in lines), timeout=60)
        assoc = scu().associate("127.0.0.1", port, ae_title="MEDVEIL")
        assert assoc.is_established
        descendants: list[int] = []
        for i, f in enumerate(burst):
            rsp = assoc.send_c_store(f)
            if "Status" not in rsp:
                break  # the association died with the gateway
            if int(rsp.Status) == 0:
                acked.append(f)
            if i == 60:
                descendants = _descendants(proc.pid)
                threading.Timer(0.05, os.kill, (proc.pid, signal.SIGKILL)).start()
        assoc.abort()
        # pynetdicom leaves the socket of an association whose peer died for the garbage
        # collector; collect it here, not in whichever test runs next.
        del assoc
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        reader.join(10)
        if proc.stderr is not None:
            proc.stderr.close()
    assert 60 < len(acked) < len(burst), "the kill did not land mid-association"
    for f in acked:
        rel = where[keyed.path_token(f.name)]
        assert (store / rel).read_bytes() == (ref / rel).read_bytes()
    stored = [p for p in store.rglob("*.dcm") if not p.name.startswith(".")]
    for p in stored:  # nothing else, and nothing half written, under a final name
        assert p.read_bytes() == (ref / p.relative_to(store)).read_bytes()
    # No orphan: the forkserver and its workers go with the gateway (PR_SET_PDEATHSIG).
    assert len(descendants) >= 2
    assert wait_until(lambda: not any(alive(d) for d in descendants), timeout=10), [
        d for d in descendants if alive(d)
    ]

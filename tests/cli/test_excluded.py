"""Instances a [filter] rule excludes are counted as ``excluded`` everywhere: the CLI's last
line, summary.json, and the gateway's tally and log (never as written or quarantined)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from medveil.cli.main import main
from medveil.policy.schema import Policy
from medveil.run.demo import with_demo_rules, write_demo_archive

SECRET = bytes(range(32))
EXCLUDE_CT = (
    '[[filter.exclude]]\nlabel = "no CT"\n'
    'tests = [{field = "Modality", op = "equals", value = "CT"}]\n'
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("excl")
    files = [p for p in write_demo_archive(root / "in") if p.suffix == ".dcm"]
    return root / "in", files


def _ct(files: list[Path]) -> list[Path]:
    import pydicom

    return [f for f in files if pydicom.dcmread(f, stop_before_pixels=True).Modality == "CT"]


def test_cli_last_line_counts_excluded_by_rule(demo, tmp_path: Path, capsys) -> None:
    src, files = demo
    n_ct = len(_ct(files))
    assert 0 < n_ct < len(files)
    key = tmp_path / "k"
    key.write_text(SECRET.hex())
    key.chmod(0o600)
    policy = tmp_path / "p.toml"
    policy.write_text(EXCLUDE_CT)
    out = tmp_path / "out"
    argv = ["deid", str(src), str(out), "--secret-file", str(key), "--policy", str(policy)]
    assert main([*argv, "--workers", "1"]) == 0  # an exclusion is not a quarantine
    last = capsys.readouterr().out.strip().splitlines()[0]
    assert f", {n_ct} excluded ({n_ct} by exclude[0] (no CT))" in last
    summary = json.loads((out / ".medveil" / "summary.json").read_text())
    assert summary["excluded"] == {"exclude[0]": n_ct} and summary["excluded_total"] == n_ct
    # Excluded is neither written nor quarantined, and nothing of them is in the release.
    assert (summary["written"], summary["quarantined"]) == (len(files) - n_ct, 0)
    assert len(list(out.rglob("*.dcm"))) == summary["written"]


def test_gateway_tally_counts_excluded_and_acknowledges(demo, tmp_path: Path) -> None:
    pytest.importorskip("pynetdicom")
    from medveil.net.gateway import Gateway, GatewayConfig, JsonLog
    from pynetdicom import AE, StoragePresentationContexts

    _src, files = demo
    cts = _ct(files)
    policy = with_demo_rules(Policy.from_toml(EXCLUDE_CT))
    buffer = io.StringIO()
    gw = Gateway(
        GatewayConfig(
            policy=policy,
            secret=SECRET,
            store=tmp_path / "store",
            host="127.0.0.1",
            port=0,
            workers=1,
        ),
        JsonLog(buffer),
    )
    gw.start()
    try:
        ae = AE(ae_title="TESTSCU")
        for cx in StoragePresentationContexts[:120]:
            ae.add_requested_context(cx.abstract_syntax)
        assoc = ae.associate("127.0.0.1", gw.port, ae_title="MEDVEIL")
        assert assoc.is_established
        try:
            statuses = [int(assoc.send_c_store(f).Status) for f in files]
        finally:
            assoc.release()
    finally:
        gw.stop()
    # Accepted (a failure status would make the sender retry), not stored.
    assert statuses == [0] * len(files)
    assert gw.counts["excluded"] == len(cts)
    assert gw.counts["written"] == len(files) - len(cts)
    assert gw.counts["quarantined"] == 0
    events = [json.loads(line) for line in buffer.getvalue().splitlines()]
    excluded = [e for e in events if e["event"] == "excluded"]
    assert len(excluded) == len(cts) and {e["rule"] for e in excluded} == {"exclude[0]"}
    done = [e for e in events if e["event"] == "shutdown" and e.get("stage") == "done"]
    assert done and done[0]["excluded"] == len(cts)
    assert len(list((tmp_path / "store").rglob("*.dcm"))) == len(files) - len(cts)

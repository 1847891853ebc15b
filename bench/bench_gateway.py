"""Gateway throughput: N instances over 4 concurrent associations vs the file-based run.

    python bench/bench_gateway.py --instances 1000 --workers 2

Generates N small CT instances from the demo study (64x64, 16-bit, fake PHI), then in one
run times

1. ``medveil.archive.deidentify_archive`` on the files (the file-based peer), and
2. a ``medveil.gateway.Gateway`` in store mode on 127.0.0.1 receiving the same files from
   4 sender processes (pynetdicom, or DCMTK's storescu with ``--sender storescu``), one
   association each, measured from the first association request to the last C-STORE
   response (every response must be Success),

and checks that both outputs are byte-identical. Prints instances/s for both and the ratio.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing
import subprocess
import tempfile
import time
from pathlib import Path


def _warm(_k: int) -> None:
    """Import the sender's modules in a pool process before timing starts."""
    import pynetdicom  # noqa: F401


def send_share(port: int, k: int, paths: list[str], sender: str) -> list[int]:
    """Send paths over one association from this process; the C-STORE statuses."""
    if sender == "storescu":
        proc = subprocess.run(
            ["storescu", "-aet", f"BENCH{k}", "-aec", "MEDVEIL", "127.0.0.1", str(port), *paths],
            capture_output=True,
            text=True,
        )
        # storescu exits non-zero when any C-STORE failed.
        return [0 if proc.returncode == 0 else 1] * len(paths)
    from pynetdicom import AE, StoragePresentationContexts

    ae = AE(ae_title=f"BENCH{k}")
    for cx in StoragePresentationContexts[:120]:
        ae.add_requested_context(cx.abstract_syntax)
    assoc = ae.associate("127.0.0.1", port, ae_title="MEDVEIL")
    assert assoc.is_established
    out = [int(assoc.send_c_store(p).Status) for p in paths]
    assoc.release()
    return out


def tree(root: Path) -> dict[str, bytes]:
    """Every finished .dcm under root by relative path."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*.dcm"))
        if not p.name.startswith(".")
    }


def main() -> int:
    """Run the benchmark and print a summary line per contender."""
    from medveil.net.gateway import Gateway, GatewayConfig, JsonLog
    from medveil.policy.schema import Policy
    from medveil.run.archive import deidentify_archive
    from medveil.run.demo import with_demo_rules, write_copies, write_demo_archive

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--associations", type=int, default=4)
    ap.add_argument(
        "--sender",
        choices=("pynetdicom", "storescu"),
        default="pynetdicom",
        help="SCU used by each sending process (storescu: DCMTK's, one process per association)",
    )
    args = ap.parse_args()

    secret = bytes(range(32))
    policy = with_demo_rules(Policy.default())
    root = Path(tempfile.mkdtemp(prefix="medveil-bench-gateway-"))
    demo = [p for p in write_demo_archive(root / "demo") if p.suffix == ".dcm"]
    files = write_copies(root / "in", demo[0], args.instances)
    mb = sum(f.stat().st_size for f in files) / 1e6

    t0 = time.perf_counter()
    summary = deidentify_archive(
        root / "in", root / "ref", policy=policy, secret=secret, workers=args.workers
    )
    file_s = time.perf_counter() - t0
    assert summary.written == len(files), summary

    with open(root / "gateway.jsonl", "w", encoding="utf-8") as logf:
        gw = Gateway(
            GatewayConfig(
                policy=policy,
                secret=secret,
                store=root / "store",
                host="127.0.0.1",
                port=0,
                workers=args.workers,
            ),
            JsonLog(logf),
        )
        gw.start()
        shares = [[str(f) for f in files[k :: args.associations]] for k in range(args.associations)]
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(args.associations, mp_context=ctx) as senders:
            # Senders are started (imports done) before the clock starts.
            list(senders.map(_warm, range(args.associations)))
            try:
                t0 = time.perf_counter()
                futures = [
                    senders.submit(send_share, gw.port, k, share, args.sender)
                    for k, share in enumerate(shares)
                ]
                statuses = {k: f.result() for k, f in enumerate(futures)}
                gw_s = time.perf_counter() - t0
            finally:
                gw.stop()
    assert sum(len(v) for v in statuses.values()) == len(files)
    assert all(s == 0 for v in statuses.values() for s in v), "a C-STORE failed"
    ref, got = tree(root / "ref"), tree(root / "store")
    assert ref == got, "gateway output differs from the file-based run"

    n = len(files)
    print(f"{n} instances, {mb:.1f} MB, {args.workers} workers, output byte-identical")
    print(f"file-based deidentify_archive : {file_s:6.2f} s {n / file_s:7.1f} instances/s")
    print(
        f"gateway, {args.associations} associations   : {gw_s:6.2f} s {n / gw_s:7.1f} instances/s"
        f"  ({file_s / gw_s:.2f}x the file-based rate)"
    )
    return 0


if __name__ == "__main__":  # the worker pool starts processes that import this module
    raise SystemExit(main())

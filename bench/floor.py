"""The CPU floor issue 21's decisions set per file, beside gdcmanon's whole cost.

Run: python bench/floor.py CORPUS_DIR [CORPUS_DIR ...] [--repeat 5]

Issue 21 keeps the SHA-256 of every released file (computed from the bytes written) and
asks for files per CPU-second >= 1.0x gdcmanon's. Whatever medveil's engine does, each
file costs at least: reading it, writing its output under a temporary name and renaming
it (the kernel's copies, like any tool's), and the SHA-256 of the output (OpenSSL's, the
one hashlib loads; SHA-NI where the CPU has it). This script measures, on the same
machine in the same run, per file of each corpus folder:

- gdcmanon -e (user + system CPU, GNU time, best of --repeat runs);
- read + write to a temporary name + rename, no engine at all (os.times of this process);
- the same with the SHA-256 of each file's bytes right after its read (hashlib, in cache,
  as the engine hashes its output in the pass that builds it; the output is about the
  input's size): the floor;

and prints the SHA-256's share (the difference), the floor and the best files-per-CPU-second
ratio against gdcmanon that any engine keeping the hash could reach: gdcmanon's CPU per
file / the floor.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def files_of(folder: Path) -> list[Path]:
    """The regular files under folder, sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file())


def gdcmanon_cpu(folder: Path, cert: Path, repeat: int) -> tuple[float, float]:
    """gdcmanon -e over folder: the least (user, system) CPU seconds of repeat runs."""
    best: tuple[float, float] | None = None
    with tempfile.TemporaryDirectory(prefix="floor-gdc-") as tmp:
        for i in range(repeat):
            out = Path(tmp) / f"out{i}"
            stats = Path(tmp) / "time"
            argv = ["gdcmanon", "-e", "-c", str(cert), "-r", "--continue"]
            argv += ["-i", str(folder), "-o", str(out)]
            subprocess.run(
                ["/usr/bin/time", "-f", "%U %S", "-o", str(stats), *argv],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            user, system = (float(x) for x in stats.read_text().split()[-2:])
            if best is None or user + system < sum(best):
                best = (user, system)
            shutil.rmtree(out)
    assert best is not None
    return best


def copy_cpu(paths: list[Path], repeat: int, sha256: bool) -> tuple[float, float]:
    """(user, system) CPU seconds to read each file, hash it (with sha256, while the bytes
    are in cache, as the engine does its output), write it under a temporary name and
    rename it, into a fresh folder; least of repeat runs. One reused read buffer."""
    buf = bytearray(max(p.stat().st_size for p in paths))
    best: tuple[float, float] | None = None
    with tempfile.TemporaryDirectory(prefix="floor-copy-") as tmp:
        for i in range(repeat):
            out = Path(tmp) / f"out{i}"
            out.mkdir()
            t0 = os.times()
            for n, p in enumerate(paths):
                fd = os.open(p, os.O_RDONLY)
                try:
                    got = os.readv(fd, [buf])
                finally:
                    os.close(fd)
                if sha256:
                    hashlib.sha256(memoryview(buf)[:got]).digest()
                part = out / f".{n}.part"
                wfd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                try:
                    os.write(wfd, memoryview(buf)[:got])
                finally:
                    os.close(wfd)
                os.rename(part, out / f"{n}.dcm")
            t1 = os.times()
            run = (t1.user - t0.user, t1.system - t0.system)
            if best is None or sum(run) < sum(best):
                best = run
            shutil.rmtree(out)
    assert best is not None
    return best


def main() -> None:
    """Print the per-file floor and the best reachable ratio for each corpus folder."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--cert", type=Path, help="gdcmanon's certificate (made when missing)")
    args = ap.parse_args()
    if shutil.which("gdcmanon") is None:
        sys.exit("gdcmanon is not installed (Debian: libgdcm-tools)")
    with tempfile.TemporaryDirectory(prefix="floor-cert-") as tmp:
        cert = args.cert
        if cert is None:
            cert = Path(tmp) / "cert.pem"
            key = Path(tmp) / "key.pem"
            subprocess.run(
                [
                    *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
                    *("-subj", "/CN=floor", "-keyout", str(key), "-out", str(cert)),
                ],
                check=True,
                capture_output=True,
            )
        print(
            "| corpus | files | MB | gdcmanon user+sys ms/file | SHA-256 ms/file "
            "| read+write+rename user+sys ms/file | floor (with SHA) ms/file | best ratio |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for folder in args.folders:
            paths = files_of(folder)
            mb = sum(p.stat().st_size for p in paths) / 1e6
            g_user, g_sys = gdcmanon_cpu(folder, cert, args.repeat)
            c_user, c_sys = copy_cpu(paths, args.repeat, sha256=False)
            f_user, f_sys = copy_cpu(paths, args.repeat, sha256=True)
            n = len(paths)
            gdc, floor = (g_user + g_sys) / n, (f_user + f_sys) / n
            h = max(0.0, f_user + f_sys - c_user - c_sys)
            print(
                f"| {folder.name} | {n} | {mb:.0f} | {gdc * 1e3:.2f} ({g_user / n * 1e3:.2f}"
                f"+{g_sys / n * 1e3:.2f}) | {h / n * 1e3:.2f} | {(c_user + c_sys) / n * 1e3:.2f}"
                f" ({c_user / n * 1e3:.2f}+{c_sys / n * 1e3:.2f}) | {floor * 1e3:.2f}"
                f" | {gdc / floor:.2f}x |"
            )


if __name__ == "__main__":
    main()

"""ChaCha20-Poly1305, ChaCha20 and age file sealing: medveil vs OpenSSL and `age`, one run.

Run: python bench/bench_crypto.py [--repeat 9] [--age-mib 1024] [--no-age] [--markdown]

The primitive part ends with a summary: medveil/OpenSSL per operation (seal, open, raw
ChaCha20), size (1 MiB, 64 MiB) and backend, against both OpenSSLs.

Method (the machine is shared, so single timings are noisy):
- the one-thread primitives are timed in CPU time of their process (every competitor is
  single-threaded; on the shared 2-core machine wall time mostly measures the other
  tenants); the age sealing, which is multi-threaded, in wall time;
- every repetition times every competitor once, in an order rotated per repetition, and
  the ratios are medians of per-repetition ratios (competitors of one repetition ran
  moments apart), with the p10-p90 range;
- all calls reuse their output buffers (``encrypt_into`` / ``update_into`` for
  cryptography, ``out=`` for medveil): allocating a fresh 64 MiB output per call costs
  more than the cipher;
- "openssl" is the OpenSSL inside the installed ``cryptography`` wheel, with every
  instruction set the CPU has (AVX-512 on machines that have it); "openssl-avx2" is the
  same library in a helper process started with ``OPENSSL_ia32cap=:~0xC0230000``
  (AVX-512 F, DQ, IFMA, BW and VL masked), i.e. on the instruction set of medveil's
  fastest path and of CI machines;
- medveil's output is checked against OpenSSL's before timing, so a fast wrong kernel
  cannot pass;
- age sealing: a random file of --age-mib MiB in /dev/shm (tmpfs: the disk is not
  measured; --age-dir DIR puts it on another file system), sealed to an X25519
  recipient by medveil with threads=1 (everything, reading and writing included, on the
  calling thread), with all threads, and by the ``age`` command, interleaved, each into
  a new file (the previous output is removed before the clock starts); the outputs are
  opened again to check them.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from medveil import _core, crypto
from medveil.crypto import agefile as age

MIB = 1 << 20
KEY = bytes(range(32))
NONCE = bytes(range(12))

# Runs in a child process whose OpenSSL has AVX-512 masked: reads "op size calls" lines,
# answers with the seconds the calls took.
HELPER = r"""
import sys, time
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
key, nonce = bytes(range(32)), bytes(range(12))
aead = ChaCha20Poly1305(key)
bufs = {}
for line in sys.stdin:
    op, size, calls = line.split()
    size, calls = int(size), int(calls)
    if size not in bufs:
        bufs[size] = (bytearray(size), bytearray(size + 16), bytearray(size + 64))
    data, out, out2 = bufs[size]
    if op == "open":
        aead.encrypt_into(nonce, data, None, out)
    t = time.process_time()
    for _ in range(calls):
        if op == "seal":
            aead.encrypt_into(nonce, data, None, out)
        elif op == "open":
            aead.decrypt_into(nonce, out, None, data)
        else:
            Cipher(algorithms.ChaCha20(key, bytes(4) + nonce), None).encryptor().update_into(
                data, out2
            )
    print(time.process_time() - t, flush=True)
"""


@dataclass
class Competitor:
    """One timed operation; fn() performs `calls` operations on nbytes each."""

    name: str
    fn: Callable[[], float]  # returns elapsed seconds
    nbytes: int
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # CPU seconds (age part only)


def cpu_seconds() -> float:
    """CPU time of this process (all threads) plus its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(op: Callable[[], object], calls: int) -> Callable[[], float]:
    """Wrap op so that calling it runs op `calls` times and returns the elapsed time."""

    def run() -> float:
        t = time.process_time()
        for _ in range(calls):
            op()
        return (time.process_time() - t) / calls

    return run


def with_backend(name: str, fn: Callable[[], float]) -> Callable[[], float]:
    """Run fn with medveil's kernels forced onto one backend."""

    def run() -> float:
        before = _core.dispatch.active()
        _core.dispatch.set_backend(name)
        try:
            return fn()
        finally:
            _core.dispatch.set_backend(before)

    return run


class Helper:
    """The OpenSSL-with-AVX-512-masked peer in a child process."""

    def __init__(self) -> None:
        env = dict(os.environ, OPENSSL_ia32cap=":~0xC0230000")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HELPER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def op(self, op: str, size: int, calls: int) -> Callable[[], float]:
        """A competitor function timing `calls` operations in the child."""

        def run() -> float:
            assert self.proc.stdin and self.proc.stdout
            self.proc.stdin.write(f"{op} {size} {calls}\n")
            self.proc.stdin.flush()
            return float(self.proc.stdout.readline()) / calls

        return run

    def close(self) -> None:
        """Stop the child."""
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait()


def interleave(comps: list[Competitor], repeat: int) -> None:
    """Time every competitor once per repetition, rotating the order."""
    for c in comps:
        c.fn()  # warm-up: page faults, first-touch, CPU frequency
    for r in range(repeat):
        order = comps[r % len(comps) :] + comps[: r % len(comps)]
        for c in order:
            c.times.append(c.fn())


def gbps(c: Competitor) -> np.ndarray:
    return c.nbytes / np.asarray(c.times) / 1e9


def report(title: str, comps: list[Competitor], base: Competitor, markdown: bool) -> None:
    """Print median GB/s with p10-p90 and the median ratio to `base` per competitor."""
    print(f"\n{title}")
    if markdown:
        print(f"| path | GB/s (p10-p90) | vs {base.name} (p10-p90) |")
        print("|---|---|---|")
    for c in comps:
        g = gbps(c)
        ratio = np.asarray(base.times) / np.asarray(c.times)
        lo, mid, hi = np.percentile(g, [10, 50, 90])
        rlo, rmid, rhi = np.percentile(ratio, [10, 50, 90])
        if markdown:
            print(
                f"| {c.name} | {mid:.2f} ({lo:.2f}-{hi:.2f}) | {rmid:.2f}x ({rlo:.2f}-{rhi:.2f}) |"
            )
        else:
            print(
                f"  {c.name:<28} {mid:6.2f} GB/s ({lo:.2f}-{hi:.2f})   "
                f"{rmid:5.2f}x {base.name} ({rlo:.2f}-{rhi:.2f})"
            )


# (operation, size, backend) -> (ratio to openssl, ratio to openssl-avx2 or None)
SUMMARY: dict[tuple[str, int, str], tuple[float, float | None]] = {}


def run_op(
    label: str,
    size: int,
    mine: Callable[[], None],
    theirs: Callable[[], None],
    check: Callable[[], None],
    helper_op: Callable[[], float] | None,
    repeat: int,
    markdown: bool,
) -> None:
    """Time `mine` on every backend against OpenSSL (and the masked OpenSSL), and report."""
    calls = max(1, (64 * MIB) // size)
    comps: list[Competitor] = []
    for b in _core.dispatch.available():
        fn = with_backend(b, timed(mine, calls))
        fn()
        check()  # the output of this backend's call equals OpenSSL's
        comps.append(Competitor(f"medveil {b}", fn, size))
    base = Competitor("openssl", timed(theirs, calls), size)
    comps.append(base)
    masked = Competitor("openssl-avx2", helper_op, size) if helper_op is not None else None
    if masked is not None:
        comps.append(masked)
    interleave(comps, repeat)
    report(f"{label}, {size // MIB} MiB, one thread", comps, base, markdown)
    if masked is not None:
        report("  ... relative to openssl-avx2", comps, masked, markdown)
    for c in comps:
        if c.name.startswith("medveil "):
            r = float(np.median(np.asarray(base.times) / np.asarray(c.times)))
            r2 = (
                float(np.median(np.asarray(masked.times) / np.asarray(c.times)))
                if masked is not None
                else None
            )
            SUMMARY[(label, size, c.name.removeprefix("medveil "))] = (r, r2)


def bench_primitives(repeat: int, markdown: bool, helper: Helper | None) -> None:
    """AEAD seal and open and raw ChaCha20 at 1 MiB and 64 MiB, every backend vs OpenSSL."""
    aead = ChaCha20Poly1305(KEY)
    for size in (MIB, 64 * MIB):
        calls = max(1, (64 * MIB) // size)
        data = np.random.default_rng(0).bytes(size)
        out_m = bytearray(size + 16)
        out_o = bytearray(size + 16)
        aead.encrypt_into(NONCE, data, None, out_o)
        sealed = bytes(out_o)

        def seal_check(m: bytearray = out_m, o: bytearray = out_o) -> None:
            assert m == o, "medveil seal differs from OpenSSL"

        run_op(
            "ChaCha20-Poly1305 seal",
            size,
            lambda d=data, o=out_m: crypto.seal_into(KEY, NONCE, d, o),
            lambda d=data, o=out_o: aead.encrypt_into(NONCE, d, None, o),
            seal_check,
            helper.op("seal", size, calls) if helper is not None else None,
            repeat,
            markdown,
        )

        plain_m = bytearray(size)
        plain_o = bytearray(size)

        def open_check(m: bytearray = plain_m, d: bytes = data) -> None:
            assert m == d, "medveil open differs from the plaintext"

        run_op(
            "ChaCha20-Poly1305 open",
            size,
            lambda c=sealed, o=plain_m: crypto.open_into(KEY, NONCE, c, o),
            lambda c=sealed, o=plain_o: aead.decrypt_into(NONCE, c, None, o),
            open_check,
            helper.op("open", size, calls) if helper is not None else None,
            repeat,
            markdown,
        )

        xo = bytearray(size + 64)
        xm = bytearray(size)
        nonce16 = bytes(4) + NONCE

        def openssl_xor(d: bytes = data, o: bytearray = xo, n: bytes = nonce16) -> None:
            Cipher(algorithms.ChaCha20(KEY, n), None).encryptor().update_into(d, o)

        openssl_xor()

        def xor_check(m: bytearray = xm, o: bytearray = xo, n: int = size) -> None:
            assert m == o[:n], "medveil ChaCha20 differs from OpenSSL"

        run_op(
            "ChaCha20 (raw keystream XOR)",
            size,
            lambda d=data, o=xm: crypto.chacha20_xor_into(KEY, NONCE, d, o),
            openssl_xor,
            xor_check,
            helper.op("xor", size, calls) if helper is not None else None,
            repeat,
            markdown,
        )
    print_summary(markdown)


def print_summary(markdown: bool) -> None:
    """medveil / OpenSSL per operation, size and backend (median of per-repetition ratios)."""
    print("\nSummary: medveil / OpenSSL (>1: medveil faster), median per-repetition ratio")
    backends = sorted({k[2] for k in SUMMARY}, key=_core.dispatch.available().index)
    head = ["operation", "size"] + [f"{b} / openssl" for b in backends]
    head += [f"{b} / openssl-avx2" for b in backends]
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
    else:
        print("  " + "  ".join(f"{h:>22}" for h in head))
    for label, size in dict.fromkeys((k[0], k[1]) for k in SUMMARY):
        cells = [label, f"{size // MIB} MiB"]
        cells += [f"{SUMMARY[(label, size, b)][0]:.2f}x" for b in backends]
        for b in backends:
            r2 = SUMMARY[(label, size, b)][1]
            cells.append("-" if r2 is None else f"{r2:.2f}x")
        if markdown:
            print("| " + " | ".join(cells) + " |")
        else:
            print("  " + "  ".join(f"{c:>22}" for c in cells))


def bench_age(mib: int, repeat: int, markdown: bool, where: str | None) -> None:
    """Seal one large file: medveil on 1 thread, on all threads, and the age command."""
    if where:
        root = Path(where)
    else:
        root = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    work = Path(tempfile.mkdtemp(prefix="medveil-bench-", dir=root))
    try:
        src = work / "plain"
        rng = np.random.default_rng(1)
        with open(src, "wb") as fh:
            for _ in range(mib // 64):
                fh.write(rng.bytes(64 * MIB))
            fh.write(rng.bytes((mib % 64) * MIB))
        size = src.stat().st_size
        key = work / "key.txt"
        recipient = age.keygen(key)
        idents = age.load_identities(key)

        comps: list[Competitor] = []

        def measured(index: int, action: Callable[[], object], out: Path) -> Callable[[], float]:
            def run() -> float:
                # Every competitor writes a new file: freeing the previous output's pages
                # (1 GiB of them) is not part of sealing, and is serial.
                out.unlink(missing_ok=True)
                c, t = cpu_seconds(), time.perf_counter()
                action()
                wall = time.perf_counter() - t
                comps[index].cpu.append(cpu_seconds() - c)
                return wall

            return run

        def medveil_seal(threads: int) -> Callable[[], object]:
            out = work / f"m{threads}.age"
            return lambda: age.encrypt_file(src, out, recipients=[recipient], threads=threads)

        comps.append(
            Competitor("medveil age, 1 thread", measured(0, medveil_seal(1), work / "m1.age"), size)
        )
        comps.append(
            Competitor(
                f"medveil age, all ({os.cpu_count()}) threads",
                measured(1, medveil_seal(0), work / "m0.age"),
                size,
            )
        )
        age_cmd = shutil.which("age")
        if age_cmd:
            argv = [age_cmd, "-r", recipient, "-o", str(work / "a.age"), str(src)]
            comps.append(
                Competitor(
                    "age command",
                    measured(2, lambda: subprocess.run(argv, check=True), work / "a.age"),
                    size,
                )
            )
        interleave(comps, repeat)
        # Every output opens, and to the original.
        for name in ("m1.age", "m0.age", "a.age"):
            if (work / name).exists():
                age.decrypt_file(work / name, work / "back", identities=idents)
                assert _same(work / "back", src), name
        report(f"age file sealing, {mib} MiB in {root} (wall time)", comps, comps[0], markdown)
        print("  CPU seconds per GiB (all threads and children; median):")
        for c in comps:
            print(f"    {c.name:<28} {np.median(c.cpu) * (1 << 30) / size:.2f}")
        if age_cmd:
            report("  ... relative to the age command", comps, comps[-1], markdown)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _same(a: Path, b: Path) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 22), fb.read(1 << 22)
            if x != y:
                return False
            if not x:
                return True


def main() -> None:
    """Run the crypto benchmarks and print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--age-mib", type=int, default=1024, help="size of the age test file")
    ap.add_argument("--age-repeat", type=int, default=3)
    ap.add_argument("--age-dir", help="folder for the age test files (default /dev/shm)")
    ap.add_argument("--no-age", action="store_true", help="skip the file sealing part")
    ap.add_argument(
        "--no-primitives", action="store_true", help="skip the one-thread primitive part"
    )
    ap.add_argument("--no-helper", action="store_true", help="skip the AVX-512-masked OpenSSL")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    cpu = _core.dispatch.cpu()
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"backends {', '.join(_core.dispatch.available())}; "
        f"avx512f {'yes' if cpu['avx512f'] else 'no'}; python {platform.python_version()}"
    )
    if not args.no_primitives:
        helper = None if args.no_helper else Helper()
        try:
            bench_primitives(args.repeat, args.markdown, helper)
        finally:
            if helper is not None:
                helper.close()
    if not args.no_age:
        bench_age(args.age_mib, args.age_repeat, args.markdown, args.age_dir)


if __name__ == "__main__":
    main()

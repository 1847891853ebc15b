"""``python -m medveil.selftest``: known-answer checks of the installed core, on every backend.

Runs in a second on any machine: the RFC 8439 ChaCha20 block and AEAD vectors, the
masking and unused-bit kernels against numpy, and a grid check of the float-safe Laplace
sampler; then prints the active backend. Exit code 0 when everything matches.
"""

from __future__ import annotations

import sys

import numpy as np

from medveil import _core, cpu_features, crypto, fix_unused_bits, mask_regions, set_backend
from medveil.privacy import dp

# RFC 8439 section 2.4.2 (ChaCha20 encryption) and section 2.8.2 (AEAD), in full.
_KEY = bytes(range(32))
_PLAIN = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the "
    b"future, sunscreen would be it."
)
_NONCE_242 = bytes.fromhex("000000000000004a00000000")
_CIPHER_242 = bytes.fromhex(
    "6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0bf91b65c5524733ab8f593dab"
    "cd62b3571639d624e65152ab8f530c359f0861d807ca0dbf500d6a6156a38e088a22b65e52bc514d16ccf806"
    "818ce91ab77937365af90bbf74a35be6b40b8eedf2785e42874d"
)
_KEY_282 = bytes.fromhex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f")
_NONCE_282 = bytes.fromhex("070000004041424344454647")
_AAD_282 = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
_TAG_282 = bytes.fromhex("1ae10b594f09e26a7e902ecbd0600691")


def _check(name: str, ok: bool, failures: list[str]) -> None:
    print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    if not ok:
        failures.append(name)


def run() -> int:
    """Run every check on every backend; return 0 when all pass."""
    failures: list[str] = []
    info = cpu_features()
    for backend in info["available"]:
        set_backend(backend)
        print(f"backend {backend}:")
        _check(
            "ChaCha20 RFC 8439 2.4.2",
            crypto.chacha20_xor(_KEY, _NONCE_242, _PLAIN, counter=1) == _CIPHER_242,
            failures,
        )
        sealed = crypto.seal(_KEY_282, _NONCE_282, _PLAIN, _AAD_282)
        _check("ChaCha20-Poly1305 RFC 8439 2.8.2 tag", sealed[-16:] == _TAG_282, failures)
        _check(
            "AEAD open round trip",
            crypto.open(_KEY_282, _NONCE_282, sealed, _AAD_282) == _PLAIN,
            failures,
        )
        rng = np.random.default_rng(5)
        stack = rng.integers(-2000, 2000, size=(3, 64, 80), dtype=np.int16)
        expected = stack.copy()
        expected[1:3, 5:20, 10:70] = -1024
        expected[:, 60:64, :] = -1024
        mask_regions(stack, [(5, 20, 10, 70, 1, 3), (60, 99, -5, 80)], -1024)
        _check("mask_regions vs numpy", bool(np.array_equal(stack, expected)), failures)
        words = rng.integers(0, 1 << 16, size=1000, dtype=np.uint16)
        want = ((words & 0x0FFF) ^ 0x0800).astype(np.int32) - 0x0800
        fix_unused_bits(words, 12, True)
        _check(
            "fix_unused_bits vs numpy", bool(np.array_equal(words.view(np.int16), want)), failures
        )
        g = dp.granularity(3.0)
        draws = dp.laplace(3.0, 1000)
        _check("Laplace outputs on the grid", bool(np.all(np.mod(draws, g) == 0)), failures)
    set_backend("auto")
    info = cpu_features()
    print(
        f"active backend: {info['backend']} (available: {', '.join(info['available'])}); "
        f"core {getattr(_core, '__version__', '?')}"
    )
    print("all checks passed" if not failures else f"{len(failures)} check(s) FAILED")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(run())

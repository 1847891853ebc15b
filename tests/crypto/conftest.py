"""Helpers for the age tests: drive the `age` command, which reads passphrases from a TTY."""

from __future__ import annotations

import os
import pty
import select
import shutil
import signal
import subprocess

import pytest

AGE = shutil.which("age")
needs_age = pytest.mark.skipif(
    AGE is None, reason="the `age` command is not installed (Debian package `age`)"
)


def run_age(args: list[str], passphrase: str | None = None, timeout: float = 120) -> bytes:
    """Run `age ARGS` and return its stdout; a passphrase is typed into its TTY prompts.

    With a passphrase, stdout is the terminal, so pass ``-o FILE``.
    """
    assert AGE is not None
    if passphrase is None:
        done = subprocess.run([AGE, *args], check=True, capture_output=True, timeout=timeout)
        return done.stdout
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child process
        os.execv(AGE, [AGE, *args])
    pending = b""
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                raise TimeoutError(f"age {args} did not finish")
            try:
                data = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            pending += data
            # Each prompt ("Enter passphrase ...:", "Confirm passphrase:") gets one answer.
            if b"passphrase" in pending.lower() and pending.rstrip().endswith(b":"):
                os.write(fd, passphrase.encode() + b"\n")
                pending = b""
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise subprocess.CalledProcessError(code, [AGE, *args], output=pending)
    return b""

"""The installed self-test passes here and notices a wrong known answer."""

from __future__ import annotations

from medveil import selftest


def test_selftest_passes(capsys) -> None:
    assert selftest.run() == 0
    assert "all checks passed" in capsys.readouterr().out


def test_selftest_fails_on_a_wrong_vector(monkeypatch, capsys) -> None:
    bad = bytearray(selftest._CIPHER_242)
    bad[0] ^= 1
    monkeypatch.setattr(selftest, "_CIPHER_242", bytes(bad))
    assert selftest.run() == 1
    assert "FAIL ChaCha20 RFC 8439 2.4.2" in capsys.readouterr().out

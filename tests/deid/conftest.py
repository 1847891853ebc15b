"""Fixtures for engine tests: a fixed test secret and a quiet pydicom."""

from __future__ import annotations

import pytest

SECRET = bytes(range(32))
OTHER_SECRET = bytes(range(1, 33))


@pytest.fixture
def secret() -> bytes:
    """A fixed, public test secret (never use a known secret for real data)."""
    return SECRET

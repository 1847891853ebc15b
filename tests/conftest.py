"""Shared fixtures: run kernel tests on every SIMD backend this machine has."""

from __future__ import annotations

from collections.abc import Iterator

import medveil
import pytest
from medveil import _core

BACKENDS = list(_core.dispatch.available())


@pytest.fixture(params=BACKENDS, scope="module")
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Force each available backend in turn, restoring the previous one afterwards."""
    before = _core.dispatch.active()
    medveil.set_backend(request.param)
    try:
        yield request.param
    finally:
        medveil.set_backend(before)

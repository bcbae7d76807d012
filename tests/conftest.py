"""Shared fixtures: every test starts with the store setting re-read."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aixyz_sessions.conf import reset_store


@pytest.fixture(autouse=True)
def _fresh_store() -> Iterator[None]:
    reset_store()
    yield
    reset_store()

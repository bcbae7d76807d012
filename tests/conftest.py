"""Shared fixtures: every test starts with the store setting re-read.

Also the demo's tools and URLs (``demo_tools``, ``demo_urls``; see
``tests/demo_fixtures.py``) and a headless chromium (``driver``, one per test
module; see ``tests/browser_helpers.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from aixyz_sessions.conf import reset_store
from aixyz_sessions.tools import Tool
from tests.browser_helpers import chromium
from tests.demo_fixtures import demo_settings, registered_demo_tools
from tests.signal_helpers import Heard, heard_signals


@pytest.fixture(autouse=True)
def _fresh_store() -> Iterator[None]:
    reset_store()
    yield
    reset_store()


@pytest.fixture
def demo_tools() -> Iterator[dict[str, Tool]]:
    """The demo tools in the global registry for one test only."""
    with registered_demo_tools() as items:
        yield items


@pytest.fixture
def demo_urls(demo_tools: dict[str, Tool]) -> Iterator[None]:
    """The demo's URLs and settings, its tools registered."""
    with demo_settings():
        yield


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A headless chromium for the module (skips, or fails under ``CI=true``, without one)."""
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as browser:
        yield browser


@pytest.fixture
def heard() -> Iterator[Heard]:
    """Every payment signal sent during the test, in order: ``(name, arguments)``."""
    with heard_signals() as events:
        yield events

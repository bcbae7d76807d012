"""The demo project's tools and URLs in process, for the tests of the demo.

The fixtures that use these (``demo_tools``, ``demo_urls``) are in
``tests/conftest.py``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.test import override_settings

from aixyz_sessions.tools import Tool, registry
from tests.payments_helpers import LOCAL, MIDDLEWARE

ROOT = Path(__file__).resolve().parent.parent
DB_STORE = "aixyz_sessions.stores.db.DatabaseSessionStore"
DEMO_TOOLS = ("put-content", "get-content", "list-keys", "summarize-content")
_loaded: dict[str, Tool] = {}


def load_demo_tools() -> dict[str, Tool]:
    """The demo's tools (``demo_project.tools`` registers them when first imported)."""
    if not _loaded:
        importlib.import_module("demo_project.tools")
        for name in DEMO_TOOLS:
            item = registry.get(name)
            assert item is not None
            _loaded[name] = item
    return _loaded


@contextmanager
def registered_demo_tools() -> Iterator[dict[str, Tool]]:
    """The demo tools in the global registry for the ``with`` block only."""
    items = load_demo_tools()
    for item in items.values():
        registry.register(item)
    try:
        yield items
    finally:
        for name in items:
            registry.unregister(name)


def demo_templates() -> list[dict[str, Any]]:
    """The test settings' templates, plus ``demo_project``'s folder (the app is not installed)."""
    first, *rest = settings.TEMPLATES
    return [{**first, "DIRS": [*first.get("DIRS", []), ROOT / "demo_project" / "templates"]}, *rest]


@contextmanager
def demo_settings() -> Iterator[None]:
    """The demo's URLs behind X402Middleware (local facilitator), the database store."""
    with override_settings(
        ROOT_URLCONF="demo_project.urls",
        MIDDLEWARE=MIDDLEWARE,
        AIXYZ_X402=LOCAL,
        AIXYZ_SESSION_STORE=DB_STORE,
        AIXYZ_AGENT=demo_agent(),
        TEMPLATES=demo_templates(),
    ):
        yield


def demo_agent() -> dict[str, Any]:
    """The demo's ``AIXYZ_AGENT``."""
    from demo_project import settings as demo

    return dict(demo.AIXYZ_AGENT)

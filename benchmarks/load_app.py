"""The load-test server: two paid tools over HTTP, as one ASGI application.

``uvicorn benchmarks.load_app:application --workers N`` (``load.py`` runs it
with ``DJANGO_SETTINGS_MODULE=benchmarks.load_settings``). This module is
also the server's URLconf: ``POST /tools/put`` and ``POST /tools/get``.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.load_settings")

import django

django.setup()

from django.urls import include, path  # noqa: E402

from aixyz_sessions import get_session  # noqa: E402
from aixyz_sessions.asgi import get_asgi_application  # noqa: E402
from aixyz_sessions.tools import tool  # noqa: E402

PRICE = "$0.001"


@tool(price=PRICE)
async def put(key: str, value: str) -> dict[str, str]:
    """Store ``value`` under ``key`` in the payer's session."""
    session = get_session()
    assert session is not None
    await session.set(key, value)
    return {"payer": session.payer.lower(), "key": key}


@tool(price=PRICE)
async def get(key: str) -> dict[str, str | None]:
    """Read ``key`` from the payer's session."""
    session = get_session()
    assert session is not None
    return {"payer": session.payer.lower(), "value": await session.get(key)}


urlpatterns = [path("tools/", include("aixyz_sessions.tools.urls"))]

application = get_asgi_application()

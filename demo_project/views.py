"""The demo's index page: what runs here and what to try next."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse

from aixyz_sessions.tools import registry


def _store_label() -> str:
    store: Any = settings.AIXYZ_SESSION_STORE
    backend = store.get("BACKEND", "") if isinstance(store, dict) else str(store)
    return backend.rsplit(".", 1)[-1]


def _facilitator_label() -> str:
    x402: dict[str, Any] = settings.AIXYZ_X402
    if x402.get("FACILITATOR") == "local":
        return "local (in process: payments are verified, NO MONEY MOVES)"
    return str(x402.get("FACILITATOR_URL"))


async def index(request: HttpRequest) -> JsonResponse:
    """A JSON map of the demo: tools with prices, endpoints, and commands to try."""
    base = request.build_absolute_uri("/").rstrip("/")
    ws_base = "ws" + base.removeprefix("http")
    return JsonResponse(
        {
            "app": "aixyz-sessions demo: x402 sessions",
            "about": "Two paid tools store and read content in the session of whoever "
            "signed the x402 payment; two payers never see each other's data.",
            "tools": {
                item.name: {"price": item.price, "description": item.description}
                for item in registry
            },
            "endpoints": {
                "tools_http": f"{base}/tools/  (POST /tools/<name> with JSON arguments)",
                "mcp": f"{base}/mcp",
                "websocket": f"{ws_base}/ws/tools/",
                "admin": f"{base}/admin/",
            },
            "store": _store_label(),
            "network": settings.AIXYZ_X402.get("NETWORK"),
            "facilitator": _facilitator_label(),
            "try": [
                "python manage.py demo_call        # paid calls as two fresh payers",
                "python manage.py demo_call --transport ws   # or mcp",
                f"curl -i -X POST {base}/tools/get-content   # 402 Payment Required",
                f"open {base}/tools/get-content in a browser  # the x402 paywall page",
                f"open {base}/admin/aixyz_sessions/sessionentry/  # the entries written",
            ],
        },
        json_dumps_params={"indent": 2},
    )

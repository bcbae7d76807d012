"""The demo's index page: what runs here and what to try next.

``/`` negotiates on ``Accept``: a browser (``text/html`` preferred over JSON)
gets an HTML landing page, anything else (an agent, ``curl``, ``httpx``, no
``Accept`` at all) the JSON map. Both answers carry ``Vary: Accept``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.urls import Resolver404, resolve
from django.utils.cache import patch_vary_headers

from aixyz_sessions.tools import registry
from aixyz_sessions.tools.summary import arguments_of, price_options

TEMPLATE = "demo_project/index.html"
AGENT_CARD_PATH = "/.well-known/agent-card.json"
ADMIN_PATH = "/admin/"


def _store_label() -> str:
    store: Any = settings.AIXYZ_SESSION_STORE
    backend = store.get("BACKEND", "") if isinstance(store, dict) else str(store)
    return backend.rsplit(".", 1)[-1]


def _facilitator_label() -> str:
    x402: dict[str, Any] = settings.AIXYZ_X402
    if x402.get("FACILITATOR") == "local":
        return "local (in process: payments are verified, NO MONEY MOVES)"
    return str(x402.get("FACILITATOR_URL"))


def _try_lines(base: str) -> list[str]:
    return [
        "python manage.py demo_call        # paid calls as two payers, then a sign-in",
        "python manage.py demo_call --transport ws   # or mcp, or a2a",
        f"curl -i -X POST {base}/tools/get-content   # 402 Payment Required",
        f"open {base}/tools/get-content in a browser  # the x402 paywall page",
        f"open {base}/admin/aixyz_sessions/storedsession/  # the sessions written",
    ]


def _wants_html(request: HttpRequest) -> bool:
    """True when the client prefers ``text/html`` to JSON (a browser); ties go to JSON."""
    return request.get_preferred_type(["application/json", "text/html"]) == "text/html"


def _resolves(request: HttpRequest, path: str) -> bool:
    try:
        resolve(path, urlconf=getattr(request, "urlconf", None))
    except Resolver404:
        return False
    return True


def _json_index(request: HttpRequest, base: str, ws_base: str) -> JsonResponse:
    return JsonResponse(
        {
            "app": "aixyz-sessions demo: x402 sessions",
            "about": "Paid tools store, read, list and summarize content in the session of "
            "whoever signed the x402 payment; two payers never see each other's data. A payer "
            "comes back to read by signing in with the same wallet (no payment).",
            "tools": {
                item.name: {
                    "price": item.price_label,
                    "description": item.description,
                    **({"sign_in": item.sign_in} if item.sign_in else {}),
                }
                for item in registry
            },
            "endpoints": {
                "tools_http": f"{base}/tools/  (POST /tools/<name> with JSON arguments)",
                "mcp": f"{base}/mcp",
                "websocket": f"{ws_base}/ws/tools/",
                "a2a_agent": f"{base}/agent  (card: {base}/.well-known/agent-card.json)",
                "admin": f"{base}/admin/",
            },
            "store": _store_label(),
            "network": settings.AIXYZ_X402.get("NETWORK"),
            "facilitator": _facilitator_label(),
            "try": _try_lines(base),
        },
        json_dumps_params={"indent": 2},
    )


# --- the HTML page ----------------------------------------------------------------------


def _try_commands(base: str) -> list[dict[str, str]]:
    """The JSON's ``try`` lines split into command and comment; ``open URL`` becomes a link."""
    commands = []
    for line in _try_lines(base):
        command, _, note = line.partition("#")
        command = command.strip()
        step = {"command": command, "note": note.strip(), "href": "", "after": ""}
        if command.startswith("open "):
            step["href"], _, step["after"] = command.removeprefix("open ").partition(" ")
        commands.append(step)
    return commands


def _html_index(request: HttpRequest, base: str, ws_base: str) -> HttpResponse:
    x402: dict[str, Any] = settings.AIXYZ_X402
    tools = [
        {
            "name": item.name,
            "price": item.price_label,
            "price_options": price_options(item),
            "description": item.description,
            "arguments": arguments_of(item),
        }
        for item in registry
    ]
    context = {
        "base": base,
        "tools": tools,
        "endpoints": [
            ("HTTP", f"POST {base}/tools/<name>", "call a tool with its JSON arguments"),
            ("HTTP", f"GET {base}/tools/", "every tool's name, price and input schema"),
            ("MCP", f"{base}/mcp", "Model Context Protocol, streamable HTTP"),
            ("WebSocket", f"{ws_base}/ws/tools/", "tool calls over one connection"),
        ]
        + (
            [("A2A", f"POST {base}/agent", "JSON-RPC agent: a message invokes a tool at its price")]
            if _resolves(request, "/agent")
            else []
        ),
        "store": _store_label(),
        "network": x402.get("NETWORK"),
        "local_facilitator": x402.get("FACILITATOR") == "local",
        "facilitator": _facilitator_label(),
        "facilitator_url": x402.get("FACILITATOR_URL"),
        "pay_to": x402.get("PAY_TO"),
        "admin_url": f"{base}{ADMIN_PATH}" if _resolves(request, ADMIN_PATH) else "",
        "agent_card_url": (
            f"{base}{AGENT_CARD_PATH}" if _resolves(request, AGENT_CARD_PATH) else ""
        ),
        "try": _try_commands(base),
    }
    return HttpResponse(render_to_string(TEMPLATE, context))


async def index(request: HttpRequest) -> HttpResponse:
    """The demo's map: tools with prices, endpoints, and commands to try (HTML or JSON)."""
    base = request.build_absolute_uri("/").rstrip("/")
    ws_base = "ws" + base.removeprefix("http")
    if _wants_html(request):
        response = _html_index(request, base, ws_base)
    else:
        response = _json_index(request, base, ws_base)
    patch_vary_headers(response, ("Accept",))
    return response

"""Views, tools and a URLconf for the payment-options tests: several networks, metered prices.

The metered view and tool charge what the client asks them to (``charge``),
so a test can say what a call used and check what the ledger moved.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.urls import include, path

from aixyz_sessions import get_payer, get_session
from aixyz_sessions.payments import ChargeError, charge, paid
from aixyz_sessions.tools import ToolError, registry, tool
from tests.settings import LOOPBACK_HOSTS

BASE_SEPOLIA, BASE = "eip155:84532", "eip155:8453"
TWO_NETWORKS = [
    {"price": "$0.01", "network": BASE_SEPOLIA},
    {"price": "$0.01", "network": BASE},
]
METERED_TOOL, TWO_NETWORK_TOOL = "opt_metered", "opt_two_networks"
MAXIMUM = "$0.05"  # 50000 atomic units of USDC (6 decimals)


async def _write(key: str, value: str) -> str:
    session = get_session()
    assert session is not None
    await session.set(key, value)
    return session.payer


@paid(accepts=TWO_NETWORKS)
async def two_networks(request: HttpRequest) -> JsonResponse:
    """Write ``?key=`` and read ``?read=`` in the payer's session, paid on either network."""
    session = get_session()
    assert session is not None
    key = request.GET.get("key")
    if key:
        await session.set(key, request.GET.get("value", "1"))
    read = request.GET.get("read")
    value = await session.get(read) if read else None
    return JsonResponse({"payer": session.payer, "value": value})


@paid(upto=MAXIMUM)
async def metered(request: HttpRequest) -> JsonResponse:
    """Charge ``{"charge": ...}`` (absent: never call charge()), write ``key``; ``fail`` fails.

    ``"catch": true`` catches a refused charge and answers 200 with its message.
    """
    body = json.loads(request.body or b"{}")
    payer = await _write(body.get("key", "metered"), "written")
    refused = None
    if "charge" in body:
        amount = body["charge"]
        try:
            charge(amount)
        except ChargeError as exc:
            if not body.get("catch"):
                raise
            refused = str(exc)
    if body.get("fail"):
        return JsonResponse({"error": "failed on purpose"}, status=500)
    return JsonResponse({"payer": payer, "refused": refused})


@paid(upto=MAXIMUM)
async def metered_by_header(request: HttpRequest) -> JsonResponse:
    """Says what it used the SDK's way: a ``Settlement-Overrides`` response header."""
    amount = json.loads(request.body)["amount"]
    response = JsonResponse({"ok": True})
    response["Settlement-Overrides"] = json.dumps({"amount": amount})
    return response


@paid(upto=MAXIMUM)
async def metered_stream(request: HttpRequest) -> StreamingHttpResponse:
    """Charges $0.001 in the view, then tries again from its streamed body (too late)."""
    charge("$0.001")

    async def body() -> AsyncIterator[bytes]:
        try:
            charge("$0.04")
        except ChargeError as exc:
            yield f"late charge refused: {exc}".encode()
            return
        yield b"late charge taken"

    return StreamingHttpResponse(body(), content_type="text/plain")


@paid(upto=MAXIMUM, sign_in="after_payment")
async def metered_sign_in(request: HttpRequest) -> JsonResponse:
    """Charges ``{"charge": ...}`` when it is paid; a returning payer signs in for free."""
    body = json.loads(request.body or b"{}")
    if "charge" in body:
        charge(body["charge"])
    return JsonResponse({"payer": get_payer()})


async def metered_tool(key: str, amount: str | None = None) -> dict[str, Any]:
    """Write ``key``; charge ``amount`` (dollars) when given."""
    payer = await _write(key, "by tool")
    if amount == "fail":
        raise ToolError("failed on purpose")
    charged = charge(amount) if amount is not None else None
    return {"payer": payer, "charged": charged}


async def two_network_tool(key: str) -> dict[str, Any]:
    """Read ``key`` from the payer's session."""
    session = get_session()
    assert session is not None
    return {"payer": session.payer, "value": await session.get(key)}


@contextmanager
def options_tools() -> Iterator[None]:
    """The metered and two-network tools in the global registry for a block."""
    tool(metered_tool, name=METERED_TOOL, upto=MAXIMUM)
    tool(two_network_tool, name=TWO_NETWORK_TOOL, accepts=TWO_NETWORKS)
    try:
        yield
    finally:
        registry.unregister(METERED_TOOL)
        registry.unregister(TWO_NETWORK_TOOL)


urlpatterns = [
    path("admin/", admin.site.urls),
    path("two-networks/", two_networks),
    path("metered/", metered),
    path("metered-header/", metered_by_header),
    path("metered-stream/", metered_stream),
    path("metered-sign-in/", metered_sign_in),
    path("tools/", include("aixyz_sessions.tools.urls")),
    path("", include("aixyz_sessions.agent.urls")),
    path("", include("aixyz_sessions.metrics.urls")),
]

SETTINGS = {"ROOT_URLCONF": __name__, "ALLOWED_HOSTS": LOOPBACK_HOSTS}

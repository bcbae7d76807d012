"""The URLconf of ``benchmarks/channels.py``: one free view and one paid view, same work shape.

* ``GET /free/``: answers ``{"ok": true}``; no payment, no session (the baseline);
* ``GET /paid/?key=K``: ``@paid(PRICE)``, writes ``K = "1"`` in the payer's
  session and answers ``{"payer": ...}``. With ``BATCH_SETTLEMENT`` set it
  offers ``exact`` and then ``batch-settlement``; the client's registered
  scheme decides which one pays.

Django must be configured before this module is imported (``channels.py`` does).
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import path

from aixyz_sessions import get_session
from aixyz_sessions.payments import paid

PRICE = "$0.001"
PRICE_ATOMIC = 1000  # $0.001 of USDC (6 decimals)


async def free(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


@paid(PRICE)
async def paid_write(request: HttpRequest) -> JsonResponse:
    session = get_session()
    assert session is not None
    await session.set(request.GET["key"], "1")
    return JsonResponse({"payer": session.payer})


urlpatterns = [path("free/", free), path("paid/", paid_write)]

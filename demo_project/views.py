"""The demo's pages."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from aixyz_sessions import get_session, payer_context

DEMO_PAYER = "0x000000000000000000000000000000000000dEaD"


async def index(request: HttpRequest) -> JsonResponse:
    """Counts visits in a session of a fixed demo payer (payments come with x402)."""
    async with payer_context(DEMO_PAYER):
        session = get_session()
        assert session is not None
        visits = int(await session.get("visits") or 0) + 1
        await session.set("visits", str(visits))
        page = await session.list()
    return JsonResponse(
        {
            "app": "aixyz-sessions demo",
            "payer": DEMO_PAYER,
            "visits": visits,
            "session": page.entries,
            "admin": "/admin/",
        }
    )

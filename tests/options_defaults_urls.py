"""The options app's URLconf plus a view declared without a price (``@paid()``).

Kept apart: a project routing such a view needs prices in ``AIXYZ_X402["ACCEPTS"]``,
and refuses to start without them (``E110``).
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import path

from aixyz_sessions import get_payer
from aixyz_sessions.payments import paid
from tests.options_app import urlpatterns as options_urlpatterns


@paid()
async def default_priced(request: HttpRequest) -> JsonResponse:
    """No price of its own: offers the prices of AIXYZ_X402["ACCEPTS"]."""
    return JsonResponse({"payer": get_payer()})


urlpatterns = [path("default-priced/", default_priced), *options_urlpatterns]

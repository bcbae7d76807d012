"""The two apps compared by ``benchmarks/peer_fastapi.py``, configured identically.

* Django: this module is the URLconf (``ROOT_URLCONF``); ``/free`` is a plain
  async view, ``/paid`` the same view under ``@paid(PRICE)``, gated by
  ``X402Middleware`` with ``AIXYZ_X402["FACILITATOR"] = "local"`` (the
  process-wide ``LocalFacilitator``) and the default in-memory store.
* FastAPI: the x402 SDK's own ``PaymentMiddlewareASGI`` protecting ``GET /paid``
  (``/free`` unprotected), over an ``x402ResourceServer`` with the exact-EVM
  scheme for ``eip155:*`` and its own ``LocalFacilitator`` instance.

Both answer ``{"ok": true}``; same network, price and recipient.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import path
from fastapi import FastAPI
from x402 import x402ResourceServer
from x402.http import PaymentOption, RouteConfig
from x402.http.middleware.fastapi import PaymentMiddlewareASGI
from x402.mechanisms.evm.exact import ExactEvmServerScheme

from aixyz_sessions.payments import paid
from aixyz_sessions.payments.local import LocalFacilitator

NETWORK = "eip155:84532"
PRICE = "$0.01"
PAY_TO = "0x" + "ab" * 20

DJANGO_SETTINGS: dict[str, Any] = {
    "DEBUG": False,
    "SECRET_KEY": "benchmark",
    "ALLOWED_HOSTS": ["*"],
    "INSTALLED_APPS": ["aixyz_sessions"],
    "MIDDLEWARE": ["aixyz_sessions.payments.middleware.X402Middleware"],
    "ROOT_URLCONF": __name__,
    "DATABASES": {},
    "AIXYZ_X402": {"PAY_TO": PAY_TO, "NETWORK": NETWORK, "FACILITATOR": "local"},
}


# Django ----------------------------------------------------------------------------


async def free_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


@paid(PRICE)
async def paid_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


urlpatterns = [path("free", free_view), path("paid", paid_view)]


def build_django_app() -> Any:
    """Plain Django's ASGI handler (settings must be configured)."""
    from django.core.asgi import get_asgi_application

    return get_asgi_application()


def django_facilitator() -> LocalFacilitator:
    """The LocalFacilitator instance the Django side verifies with."""
    from aixyz_sessions.payments.local import get_local_facilitator

    return get_local_facilitator()


# FastAPI ---------------------------------------------------------------------------


def build_fastapi_app(facilitator: LocalFacilitator) -> FastAPI:
    """FastAPI with the SDK's payment middleware in front of ``GET /paid``."""
    server = x402ResourceServer(facilitator)  # type: ignore[arg-type]
    server.register("eip155:*", ExactEvmServerScheme())  # type: ignore[no-untyped-call, arg-type]
    routes = {
        "GET /paid": RouteConfig(
            accepts=PaymentOption(scheme="exact", pay_to=PAY_TO, price=PRICE, network=NETWORK)
        )
    }
    app = FastAPI()
    app.add_middleware(PaymentMiddlewareASGI, routes=routes, server=server)

    @app.get("/free")
    async def free() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/paid")
    async def paid_route() -> dict[str, bool]:
        return {"ok": True}

    return app

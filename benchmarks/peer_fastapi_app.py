"""The two apps compared by ``benchmarks/peer_fastapi.py``, configured identically.

* Django: this module is the URLconf (``ROOT_URLCONF``); ``/free`` is a plain
  async view, ``/paid`` the same view under ``@paid(PRICE)``, gated by
  ``X402Middleware`` with ``AIXYZ_X402["FACILITATOR"] = "local"`` (the
  process-wide ``LocalFacilitator``) and the default in-memory store;
  ``/paid-upto`` the same under ``@paid(upto=PRICE)``, charging
  ``METERED_CHARGE`` (x402 ``upto``: a Permit2 authorization of the maximum,
  settled for what the view charged).
* Django, SDK flow (attribution baseline): ``/sdk-paid``, the same async view
  gated by :class:`SdkFlowMiddleware`, a line-by-line port of what the SDK's
  FastAPI middleware does on a paid request (``process_http_request``, the
  view, ``process_settlement``, the headers) and nothing more: no replay
  guard, no session, no staging, no failure mapping. It runs in the same
  Django process, so ours minus it is what our own flow costs on Django, and
  it minus FastAPI is what Django itself costs.
* FastAPI: the x402 SDK's own ``PaymentMiddlewareASGI`` protecting ``GET /paid``
  and ``GET /paid-upto`` (``upto``, settling ``METERED_CHARGE`` through the
  SDK's ``Settlement-Overrides`` response header)
  (``/free`` unprotected), over an ``x402ResourceServer`` with the exact-EVM
  scheme for ``eip155:*`` and its own ``LocalFacilitator`` instance.

Both answer ``{"ok": true}``; same network, price and recipient.
"""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import markcoroutinefunction
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.urls import path
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from x402 import x402ResourceServer
from x402.http import HTTPRequestContext, PaymentOption, RouteConfig, x402HTTPResourceServer
from x402.http.middleware.fastapi import PaymentMiddlewareASGI
from x402.http.types import HTTPTransportContext
from x402.mechanisms.evm.exact import ExactEvmServerScheme
from x402.mechanisms.evm.upto import UptoEvmServerScheme

from aixyz_sessions.payments import charge, paid
from aixyz_sessions.payments.adapter import DjangoHTTPAdapter
from aixyz_sessions.payments.local import LocalFacilitator

NETWORK = "eip155:84532"
PRICE = "$0.01"
METERED_CHARGE = "$0.004"
PAY_TO = "0x" + "ab" * 20

DJANGO_SETTINGS: dict[str, Any] = {
    "DEBUG": False,
    "SECRET_KEY": "benchmark",
    "ALLOWED_HOSTS": ["*"],
    "INSTALLED_APPS": ["aixyz_sessions"],
    "MIDDLEWARE": [
        f"{__name__}.SdkFlowMiddleware",
        "aixyz_sessions.payments.middleware.X402Middleware",
    ],
    "ROOT_URLCONF": __name__,
    "DATABASES": {},
    "AIXYZ_X402": {"PAY_TO": PAY_TO, "NETWORK": NETWORK, "FACILITATOR": "local"},
}


# Django ----------------------------------------------------------------------------


async def free_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


async def plain_402_view(request: HttpRequest) -> JsonResponse:
    """Django's floor for any 402: a view that answers one, no x402 at all."""
    return JsonResponse({"error": "payment_required"}, status=402)


@paid(PRICE)
async def paid_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


@paid(upto=PRICE)
async def metered_view(request: HttpRequest) -> JsonResponse:
    charge(METERED_CHARGE)  # settles 40% of the authorized maximum
    return JsonResponse({"ok": True})


urlpatterns = [
    path("free", free_view),
    path("paid", paid_view),
    path("paid-upto", metered_view),
    path("sdk-paid", free_view),  # paid through SdkFlowMiddleware
    path("plain-402", plain_402_view),
]

SDK_ROUTE = "GET /sdk-paid"
_sdk_flow: dict[str, Any] = {}


def sdk_flow_facilitator() -> LocalFacilitator:
    """The LocalFacilitator of the SDK-flow-on-Django side (its own instance)."""
    if "facilitator" not in _sdk_flow:
        facilitator = LocalFacilitator()
        server = x402ResourceServer(facilitator)  # type: ignore[arg-type]
        server.register("eip155:*", ExactEvmServerScheme())  # type: ignore[no-untyped-call, arg-type]
        routes = {SDK_ROUTE: RouteConfig(accepts=_option())}
        http_server = x402HTTPResourceServer(server, routes)
        http_server.initialize()
        _sdk_flow.update(facilitator=facilitator, http_server=http_server)
    return _sdk_flow["facilitator"]  # type: ignore[no-any-return]


class SdkFlowMiddleware:
    """What the SDK's FastAPI middleware does on a paid request, as Django middleware.

    The attribution baseline: the same SDK calls in the same order on
    ``/sdk-paid``, with the same adapter our middleware uses, and nothing of
    ours around them. Error paths answer bare (the benchmark aborts on any).
    """

    async_capable = True
    sync_capable = False

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        sdk_flow_facilitator()
        http_server: x402HTTPResourceServer = _sdk_flow["http_server"]
        adapter = DjangoHTTPAdapter(request)
        context = HTTPRequestContext(
            adapter=adapter,
            path=request.path,
            method=request.method or "GET",
            payment_header=adapter.payment_header(),
        )
        if not http_server.requires_payment(context):
            return await self.get_response(request)  # type: ignore[no-any-return]
        result = await http_server.process_http_request(context)
        if result.type == "payment-error":
            instructions = result.response
            assert instructions is not None
            response = JsonResponse(instructions.body or {}, status=instructions.status)
            for name, value in instructions.headers.items():
                response[name] = value
            return response
        response = await self.get_response(request)
        if response.status_code >= 400:
            return response  # type: ignore[no-any-return]
        settlement = await http_server.process_settlement(
            result.payment_payload,  # type: ignore[arg-type]
            result.payment_requirements,  # type: ignore[arg-type]
            context=context,
            declared_extensions=result.declared_extensions,
            transport_context=HTTPTransportContext(
                request=context, response_headers=dict(response.headers.items())
            ),
            before_handler_settlement=result.before_handler_settlement,
        )
        if not settlement.success:
            return HttpResponse(status=402)
        for name, value in settlement.headers.items():
            response[name] = value
        response["Cache-Control"] = "private"
        return response  # type: ignore[no-any-return]


def build_django_app() -> Any:
    """Plain Django's ASGI handler (settings must be configured)."""
    from django.core.asgi import get_asgi_application

    return get_asgi_application()


def django_facilitator() -> LocalFacilitator:
    """The LocalFacilitator instance the Django side verifies with."""
    from aixyz_sessions.payments.local import get_local_facilitator

    return get_local_facilitator()


def _option() -> PaymentOption:
    return PaymentOption(scheme="exact", pay_to=PAY_TO, price=PRICE, network=NETWORK)


# FastAPI ---------------------------------------------------------------------------


def build_fastapi_app(facilitator: LocalFacilitator) -> FastAPI:
    """FastAPI with the SDK's payment middleware in front of ``GET /paid``."""
    server = x402ResourceServer(facilitator)  # type: ignore[arg-type]
    server.register("eip155:*", ExactEvmServerScheme())  # type: ignore[no-untyped-call, arg-type]
    server.register("eip155:*", UptoEvmServerScheme())  # type: ignore[no-untyped-call, arg-type]
    metered = PaymentOption(scheme="upto", pay_to=PAY_TO, price=PRICE, network=NETWORK)
    routes = {
        "GET /paid": RouteConfig(accepts=_option()),
        "GET /paid-upto": RouteConfig(accepts=metered),
    }
    app = FastAPI()
    app.add_middleware(PaymentMiddlewareASGI, routes=routes, server=server)

    @app.get("/free")
    async def free() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/paid")
    async def paid_route() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/paid-upto")
    async def metered_route() -> JSONResponse:
        # The SDK's way to settle less than the maximum: a response header it reads.
        overrides = json.dumps({"amount": METERED_CHARGE})
        return JSONResponse({"ok": True}, headers={"Settlement-Overrides": overrides})

    return app

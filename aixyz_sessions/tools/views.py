"""The registered tools over plain HTTP: ``GET /tools/`` and ``POST /tools/<name>``.

Payment is :class:`~aixyz_sessions.payments.middleware.X402Middleware`'s job:
:func:`call` declares its price per request (the named tool's price, see
:func:`~aixyz_sessions.payments.decorators.priced_per_request`), so the
middleware answers 402, verifies, binds the payer's session around the view
and settles a 2xx answer. Every client mistake is a JSON 4xx (nothing is
settled for it); a tool's own failure (:class:`ToolError`) is a 422.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from ..context import payer_context
from ..payments.decorators import VERIFIED_ATTR, PaidSpec, priced_per_request
from .payment_gate import tool_paid_spec
from .registry import ToolArgumentsError, ToolError, registry

__all__ = ["call", "tool_list"]


def _error(status: int, error: str, message: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": error, "message": message, **extra}, status=status)


def _arguments_error(exc: ToolArgumentsError) -> JsonResponse:
    return _error(400, "invalid_arguments", str(exc), errors=exc.errors)


async def tool_list(request: HttpRequest) -> JsonResponse:
    """``GET``: every registered tool's name, description, input schema and price."""
    if request.method not in ("GET", "HEAD"):
        response = _error(405, "method_not_allowed", "use GET to list tools")
        response["Allow"] = "GET, HEAD"
        return response
    return JsonResponse({"tools": [item.describe() for item in registry]})


def price_of_call(request: HttpRequest, kwargs: dict[str, Any]) -> PaidSpec | None:
    """The price of ``POST /tools/<name>``: the tool's, or ``None`` (free, unknown, not POST)."""
    if request.method != "POST":
        return None
    item = registry.get(str(kwargs.get("name", "")))
    return None if item is None else tool_paid_spec(item)


def _read_arguments(request: HttpRequest) -> object:
    """The JSON body (an empty body means no arguments). ``ValueError`` if not JSON."""
    if not request.body.strip():
        return {}
    return json.loads(request.body)


@priced_per_request(price_of_call)
@csrf_exempt
async def call(request: HttpRequest, name: str) -> JsonResponse:
    """``POST`` a JSON object of arguments; ``{"result": ...}`` back.

    404 unknown tool, 400 invalid JSON or arguments (``errors`` names each
    field), 422 the tool raised :class:`ToolError`, 405 other methods. A
    paid tool runs in the payer's session, bound by the middleware.
    """
    if request.method != "POST":
        response = _error(405, "method_not_allowed", "call a tool with POST")
        response["Allow"] = "POST"
        return response
    item = registry.get(name)
    if item is None:
        return _error(404, "unknown_tool", f"no tool named {name!r}")
    if item.paid and not getattr(request, VERIFIED_ATTR, False):
        raise ImproperlyConfigured(
            f"The paid tool {name!r} was called without a verified payment: add "
            "'aixyz_sessions.payments.middleware.X402Middleware' to MIDDLEWARE."
        )
    try:
        arguments = _read_arguments(request)
    except (ValueError, UnicodeDecodeError) as exc:
        detail = f"request body is not valid JSON: {exc}"
        return _error(400, "invalid_arguments", detail, errors=[{"field": "", "message": detail}])
    try:
        if item.paid:  # the middleware bound the payer's session
            result = await item.call(arguments)
        else:
            async with payer_context(None):
                result = await item.call(arguments)
    except ToolArgumentsError as exc:
        return _arguments_error(exc)
    except ToolError as exc:
        return _error(422, "tool_error", str(exc) or type(exc).__name__)
    return JsonResponse({"result": result})

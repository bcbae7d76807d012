"""The registered tools over plain HTTP: ``GET /tools/`` and ``POST /tools/<name>``.

A paid tool's URL also answers ``GET /tools/<name>?arg=value``, so it can be
opened in a browser: without a payment the middleware answers 402 (the SDK's
paywall page for a browser), and the paywall's paid retry (a ``GET`` with
``PAYMENT-SIGNATURE``) runs the tool with the query parameters as its
arguments. A free tool answers ``GET`` with 405, as before.

Payment is :class:`~aixyz_sessions.payments.middleware.X402Middleware`'s job:
:func:`call` declares its price per request (the named tool's price, see
:func:`~aixyz_sessions.payments.decorators.priced_per_request`), so the
middleware answers 402, verifies, binds the payer's session around the view
and settles a 2xx answer. Every client mistake is a JSON 4xx (nothing is
settled for it); a tool's own failure (:class:`ToolError`) is a 422. A body
over Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE`` is a 413, a value the session
store refuses (a key over 512 bytes, say) a 400.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.cache import patch_vary_headers
from django.views.decorators.csrf import csrf_exempt

from .. import bounded_json
from ..checks.served import ours_served
from ..context import payer_context
from ..payments.decorators import (
    PaidSpec,
    priced_per_request,
    refused_before_work,
)
from ..payments.retries import TOOL_CALL_ATTR, ToolCall
from . import markdown
from .failures import ToolFailure, invalid_arguments, tool_failure
from .registry import ToolArgumentsError, registry

__all__ = ["call", "tool_list"]


def _error(status: int, error: str, message: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": error, "message": message, **extra}, status=status)


def _failed(failure: ToolFailure) -> JsonResponse:
    body = {"error": failure.code, "message": failure.message, **failure.extra}
    response = JsonResponse(body, status=failure.status)
    if failure.retry_after is not None:
        response["Retry-After"] = str(failure.retry_after)
    return response


async def tool_list(request: HttpRequest) -> HttpResponse:
    """``GET``: every registered tool's name, description, input schema and price.

    JSON, unless ``Accept`` prefers Markdown (``text/markdown``, quality values
    respected; a tie or a type neither serves goes to JSON): then the same list
    as a document for agents (:mod:`.markdown`). Either way ``Vary: Accept``.
    """
    if request.method not in ("GET", "HEAD"):
        refused = _error(405, "method_not_allowed", "use GET to list tools")
        refused["Allow"] = "GET, HEAD"
        return refused
    response: HttpResponse
    if request.get_preferred_type(["application/json", *markdown.MARKDOWN_TYPES]) in (
        markdown.MARKDOWN_TYPES
    ):
        base = request.build_absolute_uri("/").rstrip("/")
        ws_base = ("ws" + base.removeprefix("http")) if ours_served() else None
        document = markdown.render(registry, list_path=request.path, base=base, ws_base=ws_base)
        response = HttpResponse(document, content_type="text/markdown; charset=utf-8")
    else:
        response = JsonResponse({"tools": [item.describe() for item in registry]})
    patch_vary_headers(response, ("Accept",))
    return response


def price_of_call(request: HttpRequest, kwargs: dict[str, Any]) -> PaidSpec | None:
    """The price of ``POST`` (or ``GET``/``HEAD``) ``/tools/<name>``: the tool's, or ``None``.

    A paid request is also marked as a call of that tool (:class:`ToolCall`),
    so a retry of it on the WebSocket or MCP, or of theirs here, is the same
    call and gets the kept answer.
    """
    if request.method not in ("POST", "GET", "HEAD"):
        return None
    item = registry.get(str(kwargs.get("name", "")))
    if item is None or item.paid_spec is None:
        return None
    setattr(request, TOOL_CALL_ATTR, ToolCall(item.name, lambda: _arguments_of(request)))
    return item.paid_spec


def _arguments_of(request: HttpRequest) -> object:
    """The call's arguments as the view reads them (raises as :func:`_read_arguments`)."""
    return _query_arguments(request) if request.method == "GET" else _read_arguments(request)


def _query_arguments(request: HttpRequest) -> dict[str, Any]:
    """``GET`` arguments: each query parameter as a string (a list when repeated)."""
    return {k: (v if len(v) > 1 else v[0]) for k, v in request.GET.lists() if v}


def _read_arguments(request: HttpRequest) -> object:
    """The JSON body (an empty body means no arguments). ``ValueError`` if not JSON.

    Nesting deeper than :data:`~aixyz_sessions.bounded_json.MAX_JSON_DEPTH` is a
    ``ValueError`` too, found before parsing.

    ``RequestDataTooBig`` when the body exceeds ``DATA_UPLOAD_MAX_MEMORY_SIZE``.
    """
    if not request.body.strip():
        return {}
    return bounded_json.loads(request.body)


@priced_per_request(price_of_call, may_charge=lambda: any(item.gated for item in registry))
@csrf_exempt
async def call(request: HttpRequest, name: str) -> HttpResponse:
    """``POST`` a JSON object of arguments; ``{"result": ...}`` back.

    404 unknown tool, 400 invalid JSON or arguments (``errors`` names each
    field), 422 the tool raised :class:`ToolError`, 405 other methods (and
    ``GET`` on a free tool). A paid tool runs in the payer's session, bound
    by the middleware; it also takes a paid ``GET`` with query arguments.
    """
    item = registry.get(name)
    browsable = request.method == "GET" and item is not None and item.paid
    if request.method != "POST" and not browsable:
        response = _error(405, "method_not_allowed", "call a tool with POST")
        response["Allow"] = "POST"
        return response
    if item is None:
        return _error(404, "unknown_tool", f"no tool named {name!r}")
    # Refusals before the tool runs leave a payment unspent (refused_before_work):
    # the client may fix the request and send the same signed payment again.
    try:
        arguments = _query_arguments(request) if browsable else _read_arguments(request)
    except RequestDataTooBig:
        return refused_before_work(
            _error(
                413,
                "request_too_large",
                f"request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes "
                "(DATA_UPLOAD_MAX_MEMORY_SIZE)",
            )
        )
    except (ValueError, UnicodeDecodeError) as exc:
        return refused_before_work(
            _failed(invalid_arguments(f"request body is not valid JSON: {exc}"))
        )
    try:
        kwargs = item.validate(arguments)
    except ToolArgumentsError as exc:
        failure = tool_failure(exc, f"tool {name!r}")
        assert failure is not None
        return refused_before_work(_failed(failure))
    try:
        if item.gated:  # the middleware bound the payer's session (paid or signed in)
            result = await item.run(kwargs)
        else:
            async with payer_context(None):
                result = await item.run(kwargs)
    except Exception as exc:
        failure = tool_failure(exc, f"tool {name!r}")
        if failure is None:
            raise  # a bug in the tool: Django's 500
        return _failed(failure)
    return JsonResponse({"result": result})

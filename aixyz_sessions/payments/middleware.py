"""``X402Middleware``: x402 payments in front of ``@paid`` views.

A Django adapter over the SDK's ``x402HTTPResourceServer``, as the SDK's own
FastAPI and Flask middleware are. Per request:

1. resolve the view; not ``@paid`` -> run it with no session bound (a paid
   view behind a framework's dispatcher answers ``PaymentNeeded``: then the
   flow below runs and calls the view again);
2. no payment header -> 402 with the SDK's ``PAYMENT-REQUIRED`` header and a
   JSON body (the SDK's paywall HTML page for a browser);
3. header present -> decode it (garbage -> 402 with the reason, never 500),
   verify through the facilitator (invalid -> 402 with the reason; facilitator
   unreachable or incoherent -> 502), claim the authorization in the replay
   guard (already used, also concurrently -> 402); a facilitator slower than
   ``FACILITATOR_TIMEOUT`` -> 504; a payment carrying a ``payment-identifier``
   id already served gets the kept answer instead (see
   :mod:`~aixyz_sessions.payments.retries`); a view declared with
   ``sign_in=`` also takes a ``SIGN-IN-WITH-X`` header instead of a payment
   (see :mod:`~aixyz_sessions.payments.sign_in`);
4. run the view inside ``payer_context(payer)`` (exempt from CSRF: the
   payment, not a cookie, authorises it); streaming bodies keep the binding
   while they are produced;
5. a 2xx response -> settle and add ``PAYMENT-RESPONSE``; settlement failed
   -> 402 with the reason and the view's body withheld (facilitator failing or
   timing out: 502 / 504). A view that raises or answers non-2xx is not
   settled; a session store that is down is a 503 with a JSON error. Either
   way the authorization is spent once the view has run (one signed payment
   starts one call), unless the view marked its answer
   :func:`~aixyz_sessions.payments.decorators.refused_before_work`.

Works in sync (WSGI) and async (ASGI) middleware chains.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from asgiref.sync import async_to_sync, iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.urls import Resolver404, resolve
from x402.http.types import HTTPRequestContext, HTTPResponseInstructions, ProcessSettleResult

from ..context import Session, payer_context
from ..exceptions import SessionStoreError
from .adapter import ROUTE_ATTR, DjangoHTTPAdapter, route_of
from .authorization import PaymentHeaderError, screen_payment_header
from .call_report import asked_to_pay
from .decorators import (
    REFUSED_BEFORE_WORK_ATTR,
    VERIFIED_ATTR,
    PaidSpec,
    PaymentNeeded,
    paid_spec_of,
)
from .facilitators import facilitator_failures
from .failures import (
    INVALID_PAYMENT,
    INVALID_SIGN_IN,
    SETTLEMENT_FAILED,
    SIGN_IN_REQUIRED,
    PaymentFailure,
)
from .headers import PAY_AND_REPEAT, PAYMENT_REQUIRED, PAYMENT_RESPONSE, PAYMENT_SIGNATURE
from .metering import SETTLEMENT_OVERRIDES, Meter, charge_override, metering
from .options import CHANNEL_SCHEME as CHANNEL
from .paid_call import PaidCall, sign_in_offer, signed_in_payer
from .readiness import ready_runtime
from .retries import TOOL_CALL_ATTR, ToolAnswer, ToolCall, fingerprint, retry_of
from .runtime import PaymentRuntime
from .sign_in import SIGN_IN_HEADER

__all__ = ["X402Middleware"]

logger = logging.getLogger("aixyz_sessions.payments")


request_logger = logging.getLogger("django.request")

AsyncGetResponse = Callable[[HttpRequest], Awaitable[HttpResponseBase]]
SUCCESS_CACHE_CONTROL = "private"
#: The paywall's wallet pop-ups (Coinbase Wallet SDK) refuse to open under
#: ``same-origin``, which Django's SecurityMiddleware sets by default.
PAYWALL_OPENER_POLICY = "same-origin-allow-popups"


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> HttpResponse:
    response = HttpResponse(json.dumps(body), status=status, content_type="application/json")
    for name, value in (headers or {}).items():
        if name.lower() != "content-type":
            response[name] = value
    return response


def _from_instructions(
    instructions: HTTPResponseInstructions | None,
    *,
    error: dict[str, Any] | None = None,
    price: str | None = None,
) -> HttpResponse:
    """A Django response from the SDK's response instructions (402 and kin)."""
    if instructions is None:
        return _json(402, error or {"error": "payment_required"})
    if instructions.is_html:
        response = HttpResponse(
            instructions.body, status=instructions.status, content_type="text/html; charset=utf-8"
        )
        for name, value in instructions.headers.items():
            if name.lower() != "content-type":
                response[name] = value
        response["Cross-Origin-Opener-Policy"] = PAYWALL_OPENER_POLICY
        return response
    body = instructions.body
    if error and not body:
        body = error
    if not body and instructions.status == 402:
        body = _readable_402(instructions, price)
    return _json(instructions.status, body if body is not None else {}, instructions.headers)


def _readable_402(instructions: HTTPResponseInstructions, price: str | None) -> dict[str, Any]:
    """What the ``PAYMENT-REQUIRED`` header says, as JSON a person can read too.

    ``{"error": "payment_required", "message", "price", "x402Version",
    "resource", "accepts"}``; ``accepts`` are the SDK's requirements as the
    header carries them (amounts in the asset's atomic units).
    """
    from x402.http import decode_payment_required_header

    body: dict[str, Any] = {"error": "payment_required"}
    header = instructions.headers.get(PAYMENT_REQUIRED)
    try:
        required = decode_payment_required_header(header) if header else None
    except Exception:  # pragma: no cover - the SDK encoded it
        required = None
    if required is None:
        return body
    data = required.model_dump(by_alias=True, exclude_none=True)
    resource = data.get("resource") or {}
    options = [
        ("at most " if a.get("scheme") == "upto" else "")
        + f"{a['amount']} atomic units of {(a.get('extra') or {}).get('name', 'the token')} "
        f"{a['asset']} on {a['network']}, paid to {a['payTo']}"
        + (" through a payment channel (batch-settlement)" if a.get("scheme") == CHANNEL else "")
        for a in data.get("accepts", [])
    ]
    what = resource.get("url") or "this resource"
    cost = f"{price} ({'; or '.join(options)})" if price else "; or ".join(options)
    body["message"] = f"{what} costs {cost}. Pay with x402: {PAY_AND_REPEAT}"
    if any(a.get("scheme") == "upto" for a in data.get("accepts", [])):
        body["message"] += (
            " An 'upto' option is metered: sign its amount as a maximum with the x402 "
            "upto scheme (the Python SDK's UptoEvmClientScheme, a Permit2 authorization); "
            "the call settles what it used."
        )
    if price:
        body["price"] = price
    body.update(
        {k: data[k] for k in ("x402Version", "resource", "accepts", "extensions") if k in data}
    )
    return body


def _error_body(code: str, message: str) -> dict[str, Any]:
    """``{"error": code, "message"}``; a refused payment also has ``reason`` (same text),
    the key its 402 bodies have always carried."""
    body: dict[str, Any] = {"error": code, "message": message}
    if code in (INVALID_PAYMENT, SETTLEMENT_FAILED, INVALID_SIGN_IN):
        body["reason"] = message
    return body


def _failure(failure: PaymentFailure) -> HttpResponse:
    """A :class:`PaymentFailure` as the HTTP answer: its status and :func:`_error_body`."""
    return _json(
        failure.status, _error_body(failure.code, failure.message), PaidCall.headers(failure)
    )


def _bind_sync(
    iterator: Iterator[bytes], session: Session, meter: Meter | None = None
) -> Iterator[bytes]:
    """Produce each chunk with ``session`` (and the call's settled ``meter``, so that a
    late ``charge()`` is refused, not lost) bound: generators do not carry context."""
    while True:
        with payer_context(session), metering(meter):
            try:
                chunk = next(iterator)
            except StopIteration:
                return
        yield chunk


async def _bind_async(
    iterator: AsyncIterator[bytes], session: Session, meter: Meter | None = None
) -> AsyncIterator[bytes]:
    """The async twin of :func:`_bind_sync`."""
    while True:
        with metering(meter):
            async with payer_context(session):
                try:
                    chunk = await anext(iterator)
                except StopAsyncIteration:
                    return
        yield chunk


def _bound_while_streaming(
    response: HttpResponseBase, session: Session, meter: Meter | None = None
) -> HttpResponseBase:
    """``response``, its streamed content (if any) produced with ``session`` (and the
    paid call's settled ``meter``) bound."""
    if isinstance(response, StreamingHttpResponse):
        content: Any = response.streaming_content
        if response.is_async:
            response.streaming_content = _bind_async(aiter(content), session, meter)
        else:
            response.streaming_content = _bind_sync(iter(content), session, meter)
    return response


class X402Middleware:
    """Gate ``@paid`` views behind x402 payments; bind the payer's session."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self._async:
            return self.__acall__(request)
        spec = self._spec(request)
        if spec is None:
            with payer_context(None):
                response = self.get_response(request)
            if not isinstance(response, PaymentNeeded):
                return response
            spec = response.spec  # a paid view the URL did not reveal (see PaymentNeeded)
        call_view = sync_to_async(self.get_response, thread_sensitive=True)
        return async_to_sync(self._paid)(request, spec, call_view)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        spec = self._spec(request)
        if spec is None:
            async with payer_context(None):
                response: HttpResponseBase = await self.get_response(request)
            if not isinstance(response, PaymentNeeded):
                return response
            spec = response.spec  # a paid view the URL did not reveal (see PaymentNeeded)
        return await self._paid(request, spec, self.get_response)

    @staticmethod
    def _spec(request: HttpRequest) -> PaidSpec | None:
        try:
            match = resolve(request.path_info, urlconf=getattr(request, "urlconf", None))
        except Resolver404:
            return None
        setattr(request, ROUTE_ATTR, match.route)  # metrics, spans, discovery: route_of()
        return paid_spec_of(match.func, request.method or "GET", request, match.kwargs)

    async def _paid(
        self, request: HttpRequest, spec: PaidSpec, call_view: AsyncGetResponse
    ) -> HttpResponseBase:
        try:
            runtime = await ready_runtime()
            return await self._process(request, spec, call_view, runtime)
        except PaymentFailure as failure:
            return _failure(failure)

    async def _process(
        self,
        request: HttpRequest,
        spec: PaidSpec,
        call_view: AsyncGetResponse,
        runtime: PaymentRuntime,
    ) -> HttpResponseBase:
        if request.method == "HEAD":
            return self._head(await self._challenge(request, spec, runtime))
        adapter = DjangoHTTPAdapter(request)
        if spec.takes_sign_in:
            credential = adapter.get_header(SIGN_IN_HEADER)
            if credential is not None:
                return await self._signed_in(request, spec, credential, call_view, runtime)
            if not spec.charges:  # a 402 that offers only the sign-in
                return _expected(request, spec, await self._challenge(request, spec, runtime))
        header = adapter.payment_header()
        if header is None:
            return _expected(request, spec, await self._challenge(request, spec, runtime))
        try:
            payload = screen_payment_header(header)  # size and depth, before the SDK parses it
        except PaymentHeaderError as exc:
            challenge = await self._challenge(request, spec, runtime)
            asked_to_pay(spec.resource, route_of(request), request.path, "unreadable")
            return _with_error(challenge, INVALID_PAYMENT, str(exc))
        tool_call = getattr(request, TOOL_CALL_ATTR, None)
        if not isinstance(tool_call, ToolCall):
            tool_call = None
        retry = retry_of(payload, lambda: _request_fingerprint(request, tool_call))

        async def view() -> HttpResponseBase:
            setattr(request, VERIFIED_ATTR, True)
            # A paid request is authorised by its signed payment, not by a cookie:
            # CsrfViewMiddleware (and DRF's session CSRF check) skip a request whose
            # CSRF processing is done. An unpaid one never gets here (402 first).
            request.csrf_processing_done = True  # type: ignore[attr-defined]
            response = await call_view(request)
            override = response.headers.get(SETTLEMENT_OVERRIDES)
            if override is not None:  # the SDK's middleware convention: same as charge()
                del response[SETTLEMENT_OVERRIDES]
                charge_override(override)
            return response

        async with PaidCall(
            runtime,
            where=request.path,
            spec=spec,
            request_path=request.path,
            retry=retry,
            route=route_of(request),
        ) as call:
            outcome = await call.run(
                runtime.http_server(spec),
                self._context(request, adapter),
                view,
                answer=lambda response, settled: _answer_of(response, settled, call, tool_call),
                succeeded=lambda response: 200 <= response.status_code < 300,
                refused_before_work=lambda response: bool(
                    getattr(response, REFUSED_BEFORE_WORK_ATTR, False)
                ),
                response_headers=lambda response: dict(response.headers.items()),
                discard=lambda response: response.close(),
            )
            if outcome.kept is not None:
                return _replayed(outcome.kept, tool_call)
            if outcome.refused:
                return self._refused(outcome.instructions, outcome.reason, request, spec, runtime)
            response = outcome.value
            assert response is not None
            if outcome.settlement is None:
                return response  # not settled; the staged writes were dropped
            for name, value in outcome.settlement.headers.items():
                response[name] = value
            response["Cache-Control"] = SUCCESS_CACHE_CONTROL
            assert call.session is not None  # committed: writes go straight through now
            return _bound_while_streaming(response, call.session, call.meter)

    def _refused(
        self,
        instructions: HTTPResponseInstructions | None,
        reason: str | None,
        request: HttpRequest,
        spec: PaidSpec,
        runtime: PaymentRuntime,
    ) -> HttpResponse:
        """The SDK refused the payment: its 402 (sign-in offered too) with the reason."""
        if instructions is None or instructions.status != 402:
            return _from_instructions(instructions, price=spec.label)
        instructions = self._offer_sign_in(instructions, request, spec, runtime) or instructions
        if reason is None:
            return _from_instructions(instructions, price=spec.label)
        return _with_error(instructions, INVALID_PAYMENT, reason)

    async def _challenge(
        self, request: HttpRequest, spec: PaidSpec, runtime: PaymentRuntime
    ) -> HTTPResponseInstructions | None:
        """The SDK's unpaid answer (402, or the paywall); a JSON 402 is built once per resource.

        With no payment the SDK's answer depends only on the price, the method,
        the URL and whether the client is a browser (``Accept``,
        ``User-Agent``): the routes this middleware gives the SDK declare no
        extensions with per-answer data and no hooks, which could make it vary
        (``payment-identifier`` is static). Building it costs a requirements
        pass and a pydantic encode per request otherwise. The sign-in offer,
        whose nonce is new for every answer, is added after the cache
        (:meth:`_offer_sign_in`). Any payment header the request carries is
        left out: this is the answer to a request without one.
        """
        if not spec.charges:
            return self._offer_sign_in(None, request, spec, runtime)
        adapter = DjangoHTTPAdapter(request, hide_payment=True)
        key = (
            spec,
            request.method or "GET",
            request.path,
            adapter.get_url(),
            adapter.get_accept_header(),
            adapter.get_user_agent(),
        )
        cached = runtime.challenges.get(key)
        if cached is not None:
            return self._offer_sign_in(cached, request, spec, runtime)
        with facilitator_failures() as failures:
            result = await runtime.http_server(spec).process_http_request(
                self._context(request, adapter)
            )
        if failures:
            raise PaymentFailure.facilitator(failures)
        instructions = result.response
        if instructions is None or instructions.status != 402 or instructions.is_html:
            # The paywall page is 2+ MB: keyed by client-chosen URL and headers it
            # would let anyone fill memory, and only people (not agents) ask for it.
            return self._offer_sign_in(instructions, request, spec, runtime)
        if not instructions.body:
            body = _readable_402(instructions, spec.label)
            instructions = dataclasses.replace(instructions, body=body)
        runtime.remember_challenge(key, instructions)
        return self._offer_sign_in(instructions, request, spec, runtime)

    @staticmethod
    def _offer_sign_in(
        instructions: HTTPResponseInstructions | None,
        request: HttpRequest,
        spec: PaidSpec,
        runtime: PaymentRuntime,
    ) -> HTTPResponseInstructions | None:
        """The 402 with the sign-in-with-x extension added, when ``spec`` takes a sign-in.

        Each answer gets its own nonce and issued-at, so this runs after the
        challenge cache (which keeps the answer without it). A sign-in-only
        resource gets a 402 of its own: ``accepts`` empty, the extension's
        auth-only mode.
        """
        if not spec.takes_sign_in:
            return instructions
        from x402.http import decode_payment_required_header, encode_payment_required_header
        from x402.schemas import PaymentRequired

        url = DjangoHTTPAdapter(request).get_url()
        header = None if instructions is None else instructions.headers.get(PAYMENT_REQUIRED)
        current = decode_payment_required_header(header) if header and spec.charges else None
        if current is not None and not isinstance(current, PaymentRequired):
            return instructions  # pragma: no cover - we send v2 only
        offered = sign_in_offer(
            runtime, spec, current, url=url, request_path=request.path, origin=_origin(request)
        )
        encoded = encode_payment_required_header(offered)
        data = offered.model_dump(by_alias=True, exclude_none=True)
        if instructions is None or current is None:
            body = {
                **data,
                "error": SIGN_IN_REQUIRED,
                "message": f"{url} needs a proven payer: sign in with your wallet "
                f"(the {SIGN_IN_HEADER} header, x402's sign-in-with-x extension)",
            }
            return HTTPResponseInstructions(
                status=402,
                headers={PAYMENT_REQUIRED: encoded, "Cache-Control": "no-store"},
                body=body,
            )
        body = instructions.body
        if isinstance(body, dict):
            body = {**body, "extensions": data["extensions"]}
        return dataclasses.replace(
            instructions,
            headers={**instructions.headers, PAYMENT_REQUIRED: encoded},
            body=body,
        )

    async def _signed_in(
        self,
        request: HttpRequest,
        spec: PaidSpec,
        credential: str,
        call_view: AsyncGetResponse,
        runtime: PaymentRuntime,
    ) -> HttpResponseBase:
        """A returning payer: the view runs in the signer's session; nothing is charged.

        A refused sign-in is a 402 that offers a fresh one (and the payment,
        for a paid resource) with the reason.
        """
        try:
            payer = await signed_in_payer(
                runtime,
                spec,
                credential,
                request_path=request.path,
                origin=_origin(request),
                where=request.path,
                route=route_of(request),
            )
        except PaymentFailure as failure:
            if failure.code != INVALID_SIGN_IN:
                raise
            challenge = await self._challenge(request, spec, runtime)
            return _with_error(challenge, INVALID_SIGN_IN, failure.message)
        setattr(request, VERIFIED_ATTR, True)
        # A signed message authorises the request, not a cookie (as for payments).
        request.csrf_processing_done = True  # type: ignore[attr-defined]
        session = Session(payer)
        async with payer_context(session):
            response = await call_view(request)
        response["Cache-Control"] = SUCCESS_CACHE_CONTROL
        return _bound_while_streaming(response, session)

    @staticmethod
    def _head(challenge: HTTPResponseInstructions | None) -> HttpResponseBase:
        """``HEAD``: GET's headers (``PAYMENT-REQUIRED`` included), 200, no body, nothing run.

        A HEAD carries no resource, so it is neither charged nor served by the
        view; a payment sent with it is ignored (not spent). The SDK's paywall
        page checks its own URL's ``Cross-Origin-Opener-Policy`` with a HEAD
        and needs a 2xx answer for that.
        """
        response = HttpResponse(status=200)
        if challenge is not None:
            for name, value in challenge.headers.items():
                response[name] = value
            if challenge.is_html:
                response["Content-Type"] = "text/html; charset=utf-8"
        response["Cross-Origin-Opener-Policy"] = PAYWALL_OPENER_POLICY
        response["Cache-Control"] = "no-store"
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """A view that hit a store outage answers 503 with a JSON error, not a 500.

        Being non-2xx, such a response is never settled.
        """
        if isinstance(exception, SessionStoreError):
            return _failure(PaymentFailure.store(exception, request.path))
        return None

    @staticmethod
    def _context(request: HttpRequest, adapter: DjangoHTTPAdapter) -> HTTPRequestContext:
        return HTTPRequestContext(
            adapter=adapter,
            path=request.path,
            method=request.method or "GET",
            payment_header=adapter.get_header(PAYMENT_SIGNATURE),
        )


def _origin(request: HttpRequest) -> str | None:
    """The origin the request reached (``hosts.request_origin``): what a sign-in names."""
    from ..hosts import request_origin

    return request_origin(
        request.scheme or "http", request.get_host(), request.META.get("SERVER_PORT")
    )


def _request_fingerprint(request: HttpRequest, tool_call: ToolCall | None) -> str:
    """What a retry must repeat: the tool and its arguments for a tool call (any
    transport), else method, path with query, body."""
    from django.core.exceptions import RequestDataTooBig

    if tool_call is not None:
        try:
            return tool_call.fingerprint()
        except (ValueError, UnicodeDecodeError, RequestDataTooBig):
            pass  # no arguments to read: the view refuses it; identify it by its bytes
    try:
        body = request.body
    except RequestDataTooBig:
        body = b"<larger than DATA_UPLOAD_MAX_MEMORY_SIZE>"
    return fingerprint("http", request.method or "GET", request.get_full_path(), body)


def _answer_of(
    response: HttpResponseBase,
    settled: ProcessSettleResult,
    call: PaidCall,
    tool_call: ToolCall | None,
) -> dict[str, Any] | None:
    """A settled response as kept for retries (``None``: streamed, not kept).

    A tool call keeps the tool's result, as every transport does (a retry on
    the WebSocket or MCP gets it in its own shape); any other view its
    status, type and body.
    """
    if isinstance(response, StreamingHttpResponse) or not isinstance(response, HttpResponse):
        return None
    payment_response = settled.headers.get(PAYMENT_RESPONSE)
    if tool_call is not None:
        try:
            result = json.loads(response.content)["result"]
        except (ValueError, KeyError, TypeError):
            return None
        receipt = settled.settle_response
        return ToolAnswer(
            result,
            None if call.authorization is None else call.authorization.payer,
            {} if receipt is None else receipt.model_dump(by_alias=True, exclude_none=True),
            payment_response,
        ).kept()
    return {
        "status": response.status_code,
        "content_type": response.get("Content-Type", ""),
        "payment_response": payment_response,
        "body": base64.b64encode(response.content).decode("ascii"),
    }


def _replayed(answer: dict[str, Any], tool_call: ToolCall | None) -> HttpResponse:
    """The kept answer of a call already served, for a retry with its payment identifier."""
    if tool_call is not None:
        kept = ToolAnswer.of(answer)
        response = HttpResponse(
            json.dumps({"result": kept.result}), content_type="application/json"
        )
        if kept.payment_response:
            response[PAYMENT_RESPONSE] = kept.payment_response
        response["Cache-Control"] = SUCCESS_CACHE_CONTROL
        return response
    response = HttpResponse(
        base64.b64decode(answer.get("body") or ""),
        status=int(answer.get("status") or 200),
        content_type=answer.get("content_type") or "application/json",
    )
    if answer.get("payment_response"):
        response[PAYMENT_RESPONSE] = answer["payment_response"]
    response["Cache-Control"] = SUCCESS_CACHE_CONTROL
    return response


def _expected(
    request: HttpRequest, spec: PaidSpec, challenge: HTTPResponseInstructions | None
) -> HttpResponse:
    """The 402 that starts every paid call (no payment or sign-in sent yet).

    Django logs every response of 400 and above as a ``django.request``
    WARNING; this one is expected traffic, so it is logged there at INFO
    instead. A refused payment or sign-in is still a WARNING.
    """
    response = _from_instructions(challenge)
    if response.status_code == 402:
        asked_to_pay(spec.resource, route_of(request), request.path, "missing")
        request_logger.info("%s: %s", response.reason_phrase, request.path)
        response._has_been_logged = True  # type: ignore[attr-defined]  # Django's own flag
    return response


def _with_error(
    instructions: HTTPResponseInstructions | None, error: str, reason: str
) -> HttpResponse:
    """The SDK's 402 (headers included, so the client can pay anew) with :func:`_error_body`."""
    if instructions is None:
        return _json(402, _error_body(error, reason), {"Cache-Control": "no-store"})
    return _json(instructions.status, _error_body(error, reason), instructions.headers)

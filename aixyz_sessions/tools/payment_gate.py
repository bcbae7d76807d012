"""One tool call behind an x402 payment, whatever carries it (WebSocket, a queue, ...).

HTTP has :class:`~aixyz_sessions.payments.middleware.X402Middleware`; a
message-based transport has no headers, so it hands the payment payload (the
JSON object an x402 client signs) to :func:`call_tool` with the arguments.
The gate runs the same SDK machinery as the middleware (the runtime's
``x402HTTPResourceServer`` for the tool's price, over a header-less adapter),
so requirements, matching, verification, settlement and the replay guard are
identical on every transport, and a payment is spent on one transport at most.

Order of a paid call, so that a bad call never spends a payment:

1. validate the arguments (:class:`ToolArgumentsError`);
2. no payment -> :class:`ToolPaymentError` ``payment_required`` carrying the
   SDK's ``PaymentRequired`` (what the HTTP 402 carries in ``PAYMENT-REQUIRED``);
3. screen the payment (size, JSON depth, version), then the paid-call core
   (:class:`~aixyz_sessions.payments.paid_call.PaidCall`) takes over: the
   SDK verifies it through the facilitator (``invalid_payment`` with the
   reason; ``facilitator_unavailable``, or ``facilitator_timeout`` past
   ``FACILITATOR_TIMEOUT``), the replay guard claims it (``invalid_payment``
   if used), the tool runs in the payer's staged session, and the payment
   settles; the result comes back with the SDK-encoded settlement response.
   A tool that raises is not settled and its writes are dropped; its
   authorization stays spent (it started a call).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from x402.http import decode_payment_required_header
from x402.http.types import HTTPRequestContext, HTTPResponseInstructions
from x402.schemas import PaymentRequired, SettleResponse

from ..context import payer_context
from ..payments.authorization import (
    PaymentHeaderError,
    screen_payment_header,
)
from ..payments.facilitators import facilitator_failures
from ..payments.failures import (
    INVALID_PAYMENT,
    INVALID_SIGN_IN,
    PAYMENT_REQUIRED,
    SIGN_IN_REQUIRED,
    PaymentFailure,
)
from ..payments.paid_call import PaidCall, sign_in_offer, signed_in_payer
from ..payments.retries import ToolAnswer, fingerprint, retry_of
from ..payments.runtime import PaymentRuntime, get_runtime
from .registry import Tool

__all__ = [
    "ToolCallResult",
    "ToolPaymentError",
    "call_tool",
    "payment_header_of",
    "payment_required_for",
    "screened_payment",
]

logger = logging.getLogger("aixyz_sessions.payments")

PAYMENT_REQUIRED_HEADER = "PAYMENT-REQUIRED"
PAYMENT_RESPONSE_HEADER = "PAYMENT-RESPONSE"


@dataclass(frozen=True)
class ToolCallResult:
    """What a (possibly paid) tool call produced.

    ``payment_response`` is the settlement as the SDK encodes it for the
    ``PAYMENT-RESPONSE`` header (decode with
    ``x402.http.decode_payment_response_header``); ``None`` for free tools.
    """

    result: Any
    payer: str | None = None
    settlement: SettleResponse | None = None
    payment_response: str | None = None


#: A paid tool call that cannot go on; the core's :class:`PaymentFailure` (``code``,
#: ``message``, ``payment_required``, ``payment_response``, ``to_dict()``).
ToolPaymentError = PaymentFailure


def payment_header_of(payment: object) -> str:
    """The payment a message carries, as the header the SDK reads: screened, not decoded.

    See :func:`screened_payment` (this is its header alone).
    """
    return screened_payment(payment)[0]


def screened_payment(payment: object) -> tuple[str, dict[str, Any]]:
    """The payment a message carries, as the header the SDK reads, and that header's JSON.

    A string is taken as the header itself; an object is the payload, encoded
    as the header is. Either way only its size, JSON depth and version are
    checked here (:func:`~aixyz_sessions.payments.authorization.screen_payment_header`):
    the SDK decodes and validates it once, and a refusal is explained after.
    Raises :class:`PaymentHeaderError`.
    """
    if isinstance(payment, str):
        header = payment
    elif isinstance(payment, Mapping):
        try:
            text = json.dumps(payment)
        except (TypeError, ValueError):  # not JSON: a Python caller's mistake
            raise PaymentHeaderError("payment must be a JSON object") from None
        header = base64.b64encode(text.encode()).decode("ascii")
    else:
        raise PaymentHeaderError(
            f"payment must be an x402 payment payload object, not {type(payment).__name__}"
        )
    return header, screen_payment_header(header)


class _MessageAdapter:
    """The SDK's ``HTTPAdapter`` for a call that arrived without HTTP.

    It carries only the payment (as the header the SDK would read) and a
    resource URL; the client always gets JSON, never the browser paywall.
    """

    def __init__(self, path: str, url: str, payment_header: str | None) -> None:
        self._path = path
        self._url = url
        self._payment_header = payment_header

    def get_header(self, name: str) -> str | None:
        """Only the payment header exists."""
        return self._payment_header if name.upper() == "PAYMENT-SIGNATURE" else None

    def get_method(self) -> str:
        """Tool calls are POSTs."""
        return "POST"

    def get_path(self) -> str:
        """``/tools/<name>``, as over HTTP."""
        return self._path

    def get_url(self) -> str:
        """The resource URL reported in the requirements."""
        return self._url

    def get_accept_header(self) -> str:
        """JSON, never the HTML paywall."""
        return "application/json"

    def get_user_agent(self) -> str:
        """No user agent."""
        return ""

    def get_query_params(self) -> dict[str, str | list[str]]:
        """No query."""
        return {}

    def get_query_param(self, name: str) -> str | None:
        """No query."""
        return None

    def get_body(self) -> Any:
        """Not used."""
        return None


def _path(item: Tool) -> str:
    """``/tools/<name>``: the path a tool call has on every transport."""
    return f"/tools/{item.name}"


def _context(item: Tool, resource: str | None, payment_header: str | None) -> HTTPRequestContext:
    path = _path(item)
    adapter = _MessageAdapter(path, resource or f"tool://{item.name}", payment_header)
    return HTTPRequestContext(
        adapter=adapter, path=path, method="POST", payment_header=payment_header
    )


def _payment_required_of(instructions: HTTPResponseInstructions | None) -> PaymentRequired | None:
    header = None if instructions is None else instructions.headers.get(PAYMENT_REQUIRED_HEADER)
    if not header:
        return None
    decoded = decode_payment_required_header(header)
    return decoded if isinstance(decoded, PaymentRequired) else None


async def _ready_runtime(failures: facilitator_failures) -> PaymentRuntime:
    """The payment runtime, its facilitator asked what it supports (once per process)."""
    runtime = get_runtime()
    try:
        await runtime.ensure_initialized()
    except Exception as exc:
        raise PaymentFailure.facilitator(failures, exc) from exc
    return runtime


async def payment_required_for(
    item: Tool, *, resource: str | None = None, origin: str | None = None
) -> PaymentRequired:
    """The SDK's ``PaymentRequired`` for a paid tool, as a 402 would carry it.

    A tool that takes a sign-in also offers the sign-in-with-x extension
    (``origin``: the ``scheme://host`` clients reach, unless
    ``AIXYZ_X402["ORIGIN"]`` says it); a sign-in-only tool offers only that.
    Raises :class:`ToolPaymentError` ``facilitator_unavailable`` when the
    facilitator cannot be asked what it supports, and ``ValueError`` for a
    free tool.
    """
    spec = item.paid_spec
    if spec is None:
        raise ValueError(f"tool {item.name!r} is free")
    with facilitator_failures() as failures:
        runtime = await _ready_runtime(failures)
        required = None
        if spec.charges:
            result = await runtime.http_server(spec).process_http_request(
                _context(item, resource, None)
            )
            required = _payment_required_of(result.response)
            if failures or required is None:
                raise PaymentFailure.facilitator(failures)
    if not spec.takes_sign_in:
        assert required is not None
        return required
    url = resource or f"tool://{item.name}"
    return sign_in_offer(runtime, spec, required, url=url, request_path=_path(item), origin=origin)


async def call_tool(
    item: Tool,
    arguments: object,
    payment: object = None,
    *,
    resource: str | None = None,
    sign_in: object = None,
    origin: str | None = None,
) -> ToolCallResult:
    """Validate, take the payment or the sign-in, run ``item`` and settle.

    ``payment`` is the x402 payment payload (a dict, or its base64 header
    form) or ``None``; it is ignored for a free tool, which runs with no
    session bound. ``sign_in`` is a returning payer's sign-in (the
    ``SIGN-IN-WITH-X`` value or its payload object), taken instead of a
    payment by a tool declared with ``sign_in=``; ``origin`` is the
    ``scheme://host`` a sign-in must name (``AIXYZ_X402["ORIGIN"]`` wins).
    ``resource`` is the URL reported in the requirements (default
    ``tool://<name>``). Raises :class:`ToolArgumentsError` (before any
    payment is looked at), :class:`ToolPaymentError`, or what the tool raises
    (then nothing is settled, and the authorization stays spent: it started
    a call).
    """
    kwargs = item.validate(arguments)
    spec = item.paid_spec
    if spec is None:
        async with payer_context(None):
            return ToolCallResult(await item.run(kwargs))
    if sign_in is not None and spec.takes_sign_in:
        try:
            payer = await signed_in_payer(
                get_runtime(),
                spec,
                sign_in,
                request_path=_path(item),
                origin=origin,
                where=f"tool {item.name!r}",
            )
        except PaymentFailure as failure:
            if failure.code == INVALID_SIGN_IN:  # offer a fresh sign-in (and the payment)
                failure.payment_required = await payment_required_for(
                    item, resource=resource, origin=origin
                )
            raise
        async with payer_context(payer):
            return ToolCallResult(await item.run(kwargs), payer=payer)
    if not spec.charges:
        required = await payment_required_for(item, resource=resource, origin=origin)
        raise PaymentFailure(
            SIGN_IN_REQUIRED,
            f"tool {item.name!r} needs a proven payer: send a sign-in (x402's "
            "sign-in-with-x extension, offered in payment_required)",
            payment_required=required,
        )
    if payment is None:
        required = await payment_required_for(item, resource=resource, origin=origin)
        raise PaymentFailure(
            PAYMENT_REQUIRED,
            f"tool {item.name!r} costs {spec.price}: send an x402 payment for these requirements",
            payment_required=required,
        )
    try:
        header, payload = screened_payment(payment)
    except PaymentHeaderError as exc:
        required = await payment_required_for(item, resource=resource, origin=origin)
        raise PaymentFailure(INVALID_PAYMENT, str(exc), payment_required=required) from None

    with facilitator_failures() as failures:
        runtime = await _ready_runtime(failures)
    http_server = runtime.http_server(spec)
    context = _context(item, resource, header)
    retry = retry_of(header, payload, lambda: fingerprint("tool", item.name, arguments or {}))
    where = f"tool {item.name!r}"
    async with PaidCall(
        runtime, where=where, spec=spec, request_path=_path(item), retry=retry
    ) as call:
        kept = await call.kept_answer()
        if kept is not None:  # a retry of a call already served (on any transport): its answer
            answer = ToolAnswer.of(kept)
            return ToolCallResult(
                answer.result,
                payer=answer.payer,
                settlement=SettleResponse.model_validate(answer.settlement)
                if answer.settlement
                else None,
                payment_response=answer.payment_response,
            )
        with facilitator_failures() as failures, call.verifying():
            verified = await http_server.process_http_request(context)
        if failures:
            raise PaymentFailure.facilitator(failures)
        if verified.type != "payment-verified":
            refused = _payment_required_of(verified.response)
            reason = call.refusal(header, refused.error if refused else None)
            raise PaymentFailure(
                INVALID_PAYMENT,
                reason or "payment verification failed",
                payment_required=refused,
            )
        await call.claim()
        async with call.bound():
            result = await item.run(kwargs)
        settlement = await call.settle(http_server, verified, context)
        assert call.authorization is not None
        outcome = ToolCallResult(
            result,
            payer=call.authorization.payer,
            settlement=settlement.settle_response,
            payment_response=settlement.headers.get(PAYMENT_RESPONSE_HEADER),
        )
        receipt = settlement.settle_response
        await call.keep(
            lambda: ToolAnswer(
                outcome.result,
                outcome.payer,
                {} if receipt is None else receipt.model_dump(by_alias=True, exclude_none=True),
                outcome.payment_response,
            ).kept()
        )
        return outcome

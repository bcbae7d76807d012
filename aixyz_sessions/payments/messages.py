"""Paid calls that arrive as messages (WebSocket, MCP, a queue): no HTTP headers.

HTTP has :class:`~aixyz_sessions.payments.middleware.X402Middleware`; a
message carries the payment payload (the JSON object an x402 client signs)
and, for a returning payer, a sign-in, as fields. :func:`call_paid` hands
them to the same core as HTTP (:class:`~aixyz_sessions.payments.paid_call.PaidCall`
over the runtime's ``x402HTTPResourceServer`` for the call's price, through a
header-less adapter), so requirements, matching, verification, claims,
settlement, records and kept answers are identical on every transport, and a
payment is spent on one transport at most.

What a message transport adds is only its shape: it reads the payment and
the sign-in from its message, runs its work, and renders the
:class:`PaidResult` or the :class:`~aixyz_sessions.payments.failures.PaymentFailure`
(whose ``payment_required`` says what to pay) in its own protocol.

Order of a paid message, so that a bad call never spends a payment (the
transport validates its arguments before calling in):

1. a sign-in for a resource that takes one -> the work runs as that payer,
   nothing is charged (``invalid_sign_in`` offers a fresh one);
2. no payment -> ``payment_required`` (or ``sign_in_required``) carrying the
   SDK's ``PaymentRequired``, what an HTTP 402 carries in ``PAYMENT-REQUIRED``;
3. screen the payment (size, JSON depth, version), then the core's
   :meth:`~aixyz_sessions.payments.paid_call.PaidCall.run`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from x402.http import decode_payment_required_header
from x402.http.types import HTTPRequestContext, HTTPResponseInstructions
from x402.schemas import PaymentRequired, SettleResponse

from ..context import payer_context
from .authorization import PaymentHeaderError, is_refund_request, screen_payment_header
from .call_report import asked_to_pay
from .decorators import PaidSpec
from .facilitators import facilitator_failures
from .failures import (
    INVALID_PAYMENT,
    INVALID_SIGN_IN,
    PAYMENT_REQUIRED,
    SIGN_IN_REQUIRED,
    PaymentFailure,
)
from .headers import PAYMENT_REQUIRED as PAYMENT_REQUIRED_HEADER
from .headers import PAYMENT_RESPONSE, PAYMENT_SIGNATURE
from .paid_call import PaidCall, sign_in_offer, signed_in_payer
from .readiness import ready_runtime
from .retries import ToolAnswer, retry_of

__all__ = [
    "MessageCall",
    "PaidResult",
    "call_paid",
    "payment_header_of",
    "payment_required",
    "screened_payment",
]


@dataclass(frozen=True)
class PaidResult:
    """What a (possibly paid) call that arrived as a message produced.

    ``payment_response`` is the settlement as the SDK encodes it for the
    ``PAYMENT-RESPONSE`` header (decode with
    ``x402.http.decode_payment_response_header``); ``settlement`` the same,
    decoded. Both ``None`` for a free call or a sign-in.
    """

    result: Any
    payer: str | None = None
    settlement: SettleResponse | None = None
    payment_response: str | None = None

    @classmethod
    def of(cls, answer: ToolAnswer) -> PaidResult:
        """A kept answer (a retry of a call already served, on any transport)."""
        settlement = SettleResponse.model_validate(answer.settlement) if answer.settlement else None
        return cls(answer.result, answer.payer, settlement, answer.payment_response)

    def kept(self) -> dict[str, Any] | None:
        """This answer as kept for retries (``None``: a result that is not JSON)."""
        receipt = self.settlement
        return ToolAnswer(
            self.result,
            self.payer,
            {} if receipt is None else receipt.model_dump(by_alias=True, exclude_none=True),
            self.payment_response,
        ).kept()


@dataclass(frozen=True)
class MessageCall:
    """Where a message call goes: its ``spec``, ``path``, ``resource`` URL and ``where``.

    ``path`` is what the call is on every transport (``/tools/<name>``: the
    path sign-in records and messages name); ``resource`` the URL reported in
    the requirements; ``where`` names the call in logs and messages.
    """

    spec: PaidSpec
    path: str
    resource: str
    where: str


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
        return self._payment_header if name.upper() == PAYMENT_SIGNATURE else None

    def get_method(self) -> str:
        """Message calls are POSTs."""
        return "POST"

    def get_path(self) -> str:
        """The call's path (``/tools/<name>``), as over HTTP."""
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


def _context(call: MessageCall, payment_header: str | None) -> HTTPRequestContext:
    adapter = _MessageAdapter(call.path, call.resource, payment_header)
    return HTTPRequestContext(
        adapter=adapter, path=call.path, method="POST", payment_header=payment_header
    )


def _payment_required_of(instructions: HTTPResponseInstructions | None) -> PaymentRequired | None:
    header = None if instructions is None else instructions.headers.get(PAYMENT_REQUIRED_HEADER)
    if not header:
        return None
    decoded = decode_payment_required_header(header)
    return decoded if isinstance(decoded, PaymentRequired) else None


async def payment_required(call: MessageCall, *, origin: str | None = None) -> PaymentRequired:
    """The SDK's ``PaymentRequired`` for ``call``, as a 402 would carry it.

    A resource that takes a sign-in also offers the sign-in-with-x extension
    (``origin``: the ``scheme://host`` clients reach, unless
    ``AIXYZ_X402["ORIGIN"]`` says it); a sign-in-only one offers only that.
    Raises :class:`PaymentFailure` (facilitator unreachable, server
    misconfigured).
    """
    spec = call.spec
    runtime = await ready_runtime()
    required = None
    if spec.charges:
        with facilitator_failures() as failures:
            result = await runtime.http_server(spec).process_http_request(_context(call, None))
        required = _payment_required_of(result.response)
        if failures or required is None:
            raise PaymentFailure.facilitator(failures)
    if not spec.takes_sign_in:
        assert required is not None
        return required
    return sign_in_offer(
        runtime, spec, required, url=call.resource, request_path=call.path, origin=origin
    )


async def call_paid(
    call: MessageCall,
    work: Callable[[], Awaitable[Any]],
    *,
    payment: object = None,
    sign_in: object = None,
    origin: str | None = None,
    request_fingerprint: Callable[[], str],
    settled: Callable[[Any, Any], Awaitable[None]] | None = None,
) -> PaidResult:
    """Take the payment or the sign-in for ``call``, run ``work()`` and settle.

    ``payment`` is the x402 payment payload (a dict, or its base64 header
    form) or ``None``; ``sign_in`` a returning payer's sign-in (the
    ``SIGN-IN-WITH-X`` value or its payload object), taken instead of a
    payment when the spec declares ``sign_in=``; ``origin`` the
    ``scheme://host`` a sign-in must name (``AIXYZ_X402["ORIGIN"]`` wins);
    ``request_fingerprint()`` what a retry with the payment's identifier must
    repeat (asked only when there is one); ``settled(value, settlement)`` runs
    once the payment settled, before the writes are committed (see
    :meth:`PaidCall.run`). Raises :class:`PaymentFailure`,
    or what ``work`` raises (then nothing is settled, and the authorization
    stays spent: it started a call).
    """
    spec = call.spec
    if sign_in is not None and spec.takes_sign_in:
        return await _signed_in(call, work, sign_in, origin)
    if not spec.charges:
        asked_to_pay(spec.resource, None, call.where, "missing")
        raise PaymentFailure(
            SIGN_IN_REQUIRED,
            f"{call.where} needs a proven payer: send a sign-in (x402's "
            "sign-in-with-x extension, offered in payment_required)",
            payment_required=await payment_required(call, origin=origin),
        )
    if payment is None:
        asked_to_pay(spec.resource, None, call.where, "missing")
        raise PaymentFailure(
            PAYMENT_REQUIRED,
            f"{call.where} costs {spec.label}: send an x402 payment for one of these options",
            payment_required=await payment_required(call, origin=origin),
        )
    try:
        header, payload = screened_payment(payment)
    except PaymentHeaderError as exc:
        asked_to_pay(spec.resource, None, call.where, "unreadable")
        required = await payment_required(call, origin=origin)
        raise PaymentFailure(INVALID_PAYMENT, str(exc), payment_required=required) from None
    if is_refund_request(payload):
        # A refund answers with the refund itself, not with the tool's work: it
        # is an HTTP request to any paid URL (the SDK client's refund(url)).
        raise PaymentFailure(
            INVALID_PAYMENT,
            "a channel refund is asked for over HTTP (the SDK client's refund(url)), "
            "not with a tool call",
        )
    runtime = await ready_runtime()
    retry = retry_of(payload, request_fingerprint)
    try:
        async with PaidCall(
            runtime, where=call.where, spec=spec, request_path=call.path, retry=retry
        ) as paid:
            outcome = await paid.run(
                runtime.http_server(spec),
                _context(call, header),
                work,
                answer=lambda value, settlement: _result(value, paid, settlement).kept(),
                settled=settled,
            )
    except PaymentFailure as failure:
        if failure.code == INVALID_PAYMENT and failure.payment_required is None:
            # Already used (or not verified): say what a new payment must pay.
            failure.payment_required = await payment_required(call, origin=origin)
        raise
    if outcome.kept is not None:
        return PaidResult.of(ToolAnswer.of(outcome.kept))
    if outcome.refused:
        raise PaymentFailure(
            INVALID_PAYMENT,
            outcome.reason or "payment verification failed",
            payment_required=_payment_required_of(outcome.instructions),
        )
    assert outcome.settlement is not None  # message work succeeds unless it raises
    return _result(outcome.value, paid, outcome.settlement)


def _result(value: Any, paid: PaidCall, settlement: Any) -> PaidResult:
    assert paid.authorization is not None
    return PaidResult(
        value,
        payer=paid.authorization.payer,
        settlement=settlement.settle_response,
        payment_response=settlement.headers.get(PAYMENT_RESPONSE),
    )


async def _signed_in(
    call: MessageCall, work: Callable[[], Awaitable[Any]], sign_in: object, origin: str | None
) -> PaidResult:
    """A returning payer: the work runs in the signer's session; nothing is charged."""
    runtime = await ready_runtime(facilitator=False)
    try:
        payer = await signed_in_payer(
            runtime, call.spec, sign_in, request_path=call.path, origin=origin, where=call.where
        )
    except PaymentFailure as failure:
        if failure.code == INVALID_SIGN_IN:  # offer a fresh sign-in (and the payment)
            failure.payment_required = await payment_required(call, origin=origin)
        raise
    async with payer_context(payer):
        return PaidResult(await work(), payer=payer)

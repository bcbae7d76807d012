"""One tool call on any transport without HTTP headers (WebSocket, MCP, a queue, ...).

:func:`call_tool` validates the arguments (before any payment is looked at,
so nobody pays for a call that cannot run), runs a free tool with no
session bound, and hands a paid one to the message gate of the paid-call
core (:func:`aixyz_sessions.payments.messages.call_paid`), which HTTP's
middleware shares: the same requirements, verification, claims, settlement
and kept answers on every transport. A tool call is one call whichever
transport carries it: a retry with the same payment identifier on another
transport gets the first call's answer.
"""

from __future__ import annotations

from typing import Any

from x402.schemas import PaymentRequired

from ..context import payer_context
from ..payments.failures import PaymentFailure
from ..payments.messages import MessageCall, PaidResult, call_paid, payment_required
from ..payments.retries import tool_fingerprint
from .registry import Tool

__all__ = [
    "ToolCallResult",
    "ToolPaymentError",
    "call_tool",
    "call_validated",
    "payment_required_for",
    "tool_path",
]

#: What a tool call produced: ``result``, ``payer``, ``settlement``, ``payment_response``
#: (the settlement as the SDK encodes it for ``PAYMENT-RESPONSE``; ``None`` when free).
ToolCallResult = PaidResult

#: A paid tool call that cannot go on; the core's :class:`PaymentFailure` (``code``,
#: ``message``, ``payment_required``, ``payment_response``, ``to_dict()``).
ToolPaymentError = PaymentFailure


def tool_path(name: str) -> str:
    """``/tools/<name>``: the path a tool call has on every transport."""
    return f"/tools/{name}"


def _message_call(item: Tool, resource: str | None) -> MessageCall:
    assert item.paid_spec is not None
    return MessageCall(
        spec=item.paid_spec,
        path=tool_path(item.name),
        resource=resource or f"tool://{item.name}",
        where=f"tool {item.name!r}",
    )


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
    if item.paid_spec is None:
        raise ValueError(f"tool {item.name!r} is free")
    return await payment_required(_message_call(item, resource), origin=origin)


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
    return await call_validated(
        item,
        arguments,
        item.validate(arguments),
        payment,
        resource=resource,
        sign_in=sign_in,
        origin=origin,
    )


async def call_validated(
    item: Tool,
    arguments: object,
    kwargs: dict[str, Any],
    payment: object = None,
    *,
    resource: str | None = None,
    sign_in: object = None,
    origin: str | None = None,
) -> ToolCallResult:
    """:func:`call_tool` for ``arguments`` already validated into ``kwargs``.

    For a transport that must validate before it reads the payment (MCP
    parses a payment sent as text): the tool runs with ``kwargs``; the
    ``arguments`` identify the call for retries.
    """
    if item.paid_spec is None:
        async with payer_context(None):
            return ToolCallResult(await item.run(kwargs))
    return await call_paid(
        _message_call(item, resource),
        lambda: item.run(kwargs),
        payment=payment,
        sign_in=sign_in,
        origin=origin,
        request_fingerprint=lambda: tool_fingerprint(item.name, arguments),
    )

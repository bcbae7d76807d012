"""x402 at the MCP level: what a tool call carries in ``_meta``, and its answers' shapes.

A paid MCP tool call is the same call as on every other transport: the
message gate of the paid-call core runs it
(:func:`aixyz_sessions.tools.calls.call_tool`, then
:meth:`~aixyz_sessions.payments.paid_call.PaidCall.run`). This module only
speaks x402's MCP transport around it:

* the payment is read from ``_meta["x402/payment"]`` (the payload object,
  or its JSON text, bounded before it is parsed), a returning payer's
  sign-in from ``_meta["x402/sign-in"]``;
* "pay first" and a refused payment are the payment-required result x402
  MCP clients pay from (``isError``, the ``PaymentRequired`` as
  ``structuredContent`` and as JSON text, its ``error`` the reason);
* a paid answer carries the settlement in ``_meta["x402/payment-response"]``;
  a settlement that failed says so in ``structuredContent`` under that key;
* every other failure is the ``isError`` result every tool call gets
  (:func:`~aixyz_sessions.tools.mcp.results.failure_result`).
"""

from __future__ import annotations

import json
from typing import Any

from mcp.types import CallToolResult, TextContent
from x402.mcp import MCP_PAYMENT_META_KEY
from x402.mcp.constants import MCP_PAYMENT_RESPONSE_META_KEY

from ... import bounded_json
from ...payments.authorization import MAX_HEADER_CHARS
from ...payments.failures import (
    INVALID_PAYMENT,
    PAYMENT_REQUIRED,
    REPLAYED,
    SETTLEMENT_FAILED,
    PaymentFailure,
)
from ..calls import ToolCallResult
from ..registry import Tool
from .results import failure_result, result_text

__all__ = [
    "REPLAYED",
    "failed_payment_result",
    "paid_result",
    "payment_of",
    "request_meta",
    "tool_resource_url",
]


def tool_resource_url(name: str) -> str:
    """The x402 resource a paid MCP tool sells: ``mcp://tool/<name>``."""
    return f"mcp://tool/{name}"


def request_meta(context: Any) -> dict[str, Any]:
    """The extra ``_meta`` fields of the MCP request (FastMCP keeps them as model extras)."""
    try:
        meta = context.request_context.meta
    except (AttributeError, ValueError):
        return {}
    extra = getattr(meta, "model_extra", None) if meta is not None else None
    return extra if isinstance(extra, dict) else {}


def payment_of(meta: dict[str, Any]) -> object:
    """The payment a call carries in ``_meta["x402/payment"]``, or ``None``.

    x402's MCP transport also takes the payment as JSON *text*: it is bounded
    here (size and nesting, as every payment header is) before it is parsed.
    Raises :class:`PaymentFailure` ``invalid_payment``.
    """
    payment = meta.get(MCP_PAYMENT_META_KEY)
    if not isinstance(payment, str):
        return payment
    if len(payment) > MAX_HEADER_CHARS:
        raise PaymentFailure(
            INVALID_PAYMENT, f"payment is longer than {MAX_HEADER_CHARS} characters"
        )
    try:
        return bounded_json.loads(payment)
    except ValueError as exc:
        raise PaymentFailure(INVALID_PAYMENT, f"payment is not a JSON object: {exc}") from None


def paid_result(outcome: ToolCallResult) -> CallToolResult:
    """A tool's answer: its text, and the settlement in ``_meta`` when it was paid."""
    receipt = outcome.settlement
    meta = None
    if receipt is not None:
        meta = {MCP_PAYMENT_RESPONSE_META_KEY: receipt.model_dump(by_alias=True, exclude_none=True)}
    return CallToolResult(
        content=[TextContent(type="text", text=result_text(outcome.result))],
        isError=False,
        _meta=meta,
    )


def failed_payment_result(tool: Tool, failure: PaymentFailure) -> CallToolResult:
    """A paid call that cannot go on, in the shape x402 MCP clients read.

    No payment or a refused one, with something to pay: the payment-required
    result (``structuredContent`` is the ``PaymentRequired``, ``error`` the
    reason). A failed settlement: the error result with the settlement
    (``success: false``) under ``x402/payment-response``. Anything else:
    the error result every tool call gets.
    """
    required = failure.payment_required
    pay = failure.code in (PAYMENT_REQUIRED, INVALID_PAYMENT)
    if pay and required is not None and required.accepts:
        data = required.model_dump(by_alias=True, exclude_none=True)
        data["error"] = failure.message
        return CallToolResult(
            content=[TextContent(type="text", text=json.dumps(data))],
            structuredContent=data,
            isError=True,
        )
    result = failure_result(tool, failure)
    if failure.code == SETTLEMENT_FAILED and result.structuredContent is not None:
        settled = {MCP_PAYMENT_RESPONSE_META_KEY: _settlement(failure)}
        structured = {**result.structuredContent, **settled}
        result = result.model_copy(update={"structuredContent": structured})
    return result


def _settlement(failure: PaymentFailure) -> dict[str, Any]:
    """The failed settlement as JSON: the SDK's own, else what the failure says."""
    if failure.payment_response:
        from x402.http import decode_payment_response_header

        try:
            decoded = decode_payment_response_header(failure.payment_response)
            return decoded.model_dump(by_alias=True, exclude_none=True)
        except Exception:  # pragma: no cover - the SDK encoded it
            pass
    return {"success": False, "errorReason": failure.message, "transaction": ""}

"""x402 at the MCP level: a paid registry tool behind the SDK's payment wrapper.

The ``x402.mcp`` wrapper does the protocol: with no ``_meta["x402/payment"]``
it answers the payment-required result x402 MCP clients understand; otherwise
it verifies through the runtime's ``x402ResourceServer``, runs the handler,
settles, and returns the settlement in ``_meta["x402/payment-response"]``.
This module adds what the wrapper leaves to its user, exactly as the HTTP
middleware does:

* the payer (the address the facilitator verified, EIP-55; see
  :mod:`aixyz_sessions.payments.authorization`) is bound with
  :func:`~aixyz_sessions.payer_context` while the tool runs;
* the replay guard claims ``(payer, nonce)`` in ``on_before_execution``
  (``False`` blocks the call) and releases it unless settlement succeeded;
* a facilitator outage is an error result, not a "pay again" answer.

The wrapper is built lazily on the first paid call, after the runtime has
asked the facilitator what it supports (off the event loop), and rebuilt when
the runtime changes (``AIXYZ_X402`` changed; tests).
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from mcp.types import CallToolResult, TextContent
from x402.extensions.payment_identifier import (
    PAYMENT_IDENTIFIER,
    declare_payment_identifier_extension,
)
from x402.mcp import PaymentWrapperHooks, create_payment_wrapper
from x402.mcp.constants import MCP_PAYMENT_RESPONSE_META_KEY
from x402.mcp.types import ServerHookContext, SettlementContext
from x402.schemas import ResourceConfig, ResourceInfo

from ...conf import SettingError
from ...payments.authorization import PaymentHeaderError
from ...payments.facilitators import facilitator_failures
from ...payments.failures import INVALID_PAYMENT, REPLAYED, SERVER_MISCONFIGURED, PaymentFailure
from ...payments.paid_call import PaidCall
from ...payments.retries import Retry, ToolAnswer, fingerprint, retry_of
from ...payments.runtime import PaymentRuntime, get_runtime
from ..failures import tool_failure
from ..registry import Tool
from .results import failed_result, failure_result, result_text, with_payment_error

__all__ = ["REPLAYED", "PaidToolRunner", "request_meta", "tool_resource_url"]

WrappedHandler = Callable[..., Awaitable[CallToolResult]]


def tool_resource_url(name: str) -> str:
    """The x402 resource a paid MCP tool sells: ``mcp://tool/<name>``."""
    return f"mcp://tool/{name}"


@dataclass
class _McpCall:
    """One paid MCP call: the core's :class:`PaidCall`, what its hooks refused, the tool's value."""

    arguments: dict[str, Any]
    kwargs: dict[str, Any]
    paid: PaidCall
    failure: PaymentFailure | None = None
    value: Any = None


#: The paid call in progress in this task (the hooks and handler run inside it).
_current: ContextVar[_McpCall | None] = ContextVar("aixyz_mcp_paid_call", default=None)


def _call() -> _McpCall:
    call = _current.get()
    if call is None:  # pragma: no cover - only reachable by calling the wrapper directly
        raise RuntimeError("a paid MCP tool ran outside PaidToolRunner.run()")
    return call


async def _claim(context: ServerHookContext) -> bool:
    """``on_before_execution``: the core's claim; ``False`` blocks the call."""
    call = _call()
    try:
        await call.paid.claim()
    except PaymentFailure as failure:
        call.failure = failure
        return False
    return True


async def _settled(context: SettlementContext) -> None:
    """``on_after_settlement``: the claim stays; the staged writes are committed after."""
    _call().paid.settled = True


class PaidToolRunner:
    """Runs one paid registry tool through ``x402.mcp.create_payment_wrapper``."""

    def __init__(self, tool: Tool) -> None:
        if tool.paid_spec is None:
            raise ValueError(f"tool {tool.name!r} has no price")
        self.tool = tool
        self.spec = tool.paid_spec
        self._lock = threading.Lock()
        self._built: tuple[PaymentRuntime, WrappedHandler] | None = None

    async def _handler(self) -> CallToolResult | str:
        """The tool itself, run by the wrapper once the payment verified and was claimed."""
        call = _call()
        try:
            async with call.paid.bound():
                value = call.value = await self.tool.run(call.kwargs)
            await call.paid.ready()  # the wrapper has no hook before it settles
        except PaymentFailure as failure:  # the store is down: better unsettled than unstored
            return _failure_result(failure)
        except Exception as exc:
            # An error result makes the wrapper skip settlement; the claim is released.
            return failure_result(self.tool, exc)
        return result_text(value)

    def wrapped(self, runtime: PaymentRuntime) -> WrappedHandler:
        """The SDK-wrapped handler for ``runtime`` (built once per runtime).

        Needs an initialized runtime: building the requirements uses what the
        facilitator said it supports.
        """
        built = self._built
        if built is not None and built[0] is runtime:
            return built[1]
        with self._lock:
            built = self._built
            if built is not None and built[0] is runtime:
                return built[1]
            tool, spec = self.tool, self.spec
            accepts = runtime.server.build_payment_requirements(
                ResourceConfig(
                    scheme="exact",
                    pay_to=spec.pay_to or runtime.config.pay_to,
                    price=spec.price,
                    network=spec.network or runtime.config.network,
                )
            )
            resource = ResourceInfo(
                url=tool_resource_url(tool.name),
                description=tool.description or f"Tool: {tool.name}",
                mime_type="application/json",
            )
            hooks = PaymentWrapperHooks(on_before_execution=_claim, on_after_settlement=_settled)
            decorate = create_payment_wrapper(
                runtime.server,
                accepts=accepts,
                resource=resource,
                hooks=hooks,
                # Safe retries: a payment may carry an id (see payments.retries).
                extensions={PAYMENT_IDENTIFIER: declare_payment_identifier_extension()},
            )
            handler = self._handler
            # The wrapper names hook contexts after the handler.
            named: Callable[[], Awaitable[CallToolResult | str]] = _renamed(handler, tool.name)
            wrapped: WrappedHandler = decorate(named)
            self._built = (runtime, wrapped)
            return wrapped

    async def run(
        self, arguments: dict[str, Any], kwargs: dict[str, Any], context: Any
    ) -> CallToolResult:
        """One paid call: the SDK's payment flow around the tool, replay guard included.

        ``arguments`` are already valid (checked before any payment, so nobody
        pays for a call that cannot run) and ``kwargs`` are what validating
        them gave (the tool runs with those; the arguments identify the call
        for retries); ``context`` is FastMCP's request ``Context``, from which
        the wrapper reads ``_meta["x402/payment"]``.
        """
        try:
            runtime = get_runtime()
        except SettingError as exc:
            return _failure_result(PaymentFailure(SERVER_MISCONFIGURED, str(exc)))
        with facilitator_failures() as failures:
            try:
                await runtime.ensure_initialized()
                wrapped = self.wrapped(runtime)
            except Exception as exc:
                return _failure_result(PaymentFailure.facilitator(failures, exc))
        where = f"MCP tool {self.tool.name!r}"
        try:
            retry = _retry_of(self.tool, arguments, context)
        except PaymentFailure as failure:
            return _failure_result(failure)
        paid = PaidCall(runtime, where=where, spec=self.spec, retry=retry)
        call = _McpCall(arguments, kwargs, paid)
        token = _current.set(call)
        try:
            async with call.paid:
                kept = await call.paid.kept_answer()
                if kept is not None:  # a retry of a call already served (on any transport)
                    return _rendered(ToolAnswer.of(kept))
                with facilitator_failures() as failures, call.paid.verifying():
                    # Tool arguments stay out of the wrapper's kwargs: it reserves ``ctx``.
                    result = await wrapped(ctx=context)
                if call.paid.settled:
                    await call.paid.commit()
                    await call.paid.keep(lambda: _answer_of(call, result))
        except PaymentFailure as failure:  # settled, but the staged writes were not stored
            return _failure_result(failure)
        finally:
            _current.reset(token)
        if failures and not call.paid.settled:
            return _failure_result(PaymentFailure.facilitator(failures))
        if call.failure is not None and call.failure.code != INVALID_PAYMENT:
            return _failure_result(call.failure)
        refusal = call.failure.message if call.failure else call.paid.verified.refusal
        if refusal is not None:
            return with_payment_error(result, refusal)
        return result


def request_meta(context: Any) -> dict[str, Any]:
    """The extra ``_meta`` fields of the MCP request (FastMCP keeps them as model extras)."""
    try:
        meta = context.request_context.meta
    except (AttributeError, ValueError):
        return {}
    extra = getattr(meta, "model_extra", None) if meta is not None else None
    return extra if isinstance(extra, dict) else {}


def _retry_of(tool: Tool, arguments: dict[str, Any], context: Any) -> Retry | None:
    """The payment identifier of the MCP call's payment (``_meta["x402/payment"]``), if any.

    The x402 MCP transport also takes the payment as JSON *text*, which the
    SDK's wrapper parses with ``json.loads``: that text is bounded here first
    (size and nesting, as every payment header is), or the call is refused.
    Raises :class:`PaymentFailure` ``invalid_payment``.
    """
    from x402.mcp import MCP_PAYMENT_META_KEY

    from ... import bounded_json
    from ...payments.authorization import MAX_HEADER_CHARS
    from ..payment_gate import screened_payment

    payment = request_meta(context).get(MCP_PAYMENT_META_KEY)
    if payment is None:
        return None
    if isinstance(payment, str):
        if len(payment) > MAX_HEADER_CHARS:
            raise PaymentFailure(
                INVALID_PAYMENT, f"payment is longer than {MAX_HEADER_CHARS} characters"
            )
        try:
            payment = bounded_json.loads(payment)
        except ValueError as exc:
            raise PaymentFailure(INVALID_PAYMENT, f"payment is not a JSON object: {exc}") from None
    try:
        header, payload = screened_payment(payment)
    except PaymentHeaderError:
        return None  # the wrapper refuses the payment itself, with its reason
    return retry_of(header, payload, lambda: fingerprint("tool", tool.name, arguments))


def _answer_of(call: _McpCall, result: CallToolResult) -> dict[str, Any] | None:
    """A settled MCP call in the form every tool transport keeps (see ``ToolAnswer``)."""
    settlement = (result.meta or {}).get(MCP_PAYMENT_RESPONSE_META_KEY)
    authorization = call.paid.authorization
    return ToolAnswer(
        call.value,
        None if authorization is None else authorization.payer,
        settlement if isinstance(settlement, dict) else {},
    ).kept()


def _rendered(answer: ToolAnswer) -> CallToolResult:
    """A kept tool answer as the wrapper answers a paid call: the text and the settlement."""
    return CallToolResult(
        content=[TextContent(type="text", text=result_text(answer.result))],
        isError=False,
        _meta={MCP_PAYMENT_RESPONSE_META_KEY: answer.settlement},
    )


def _failure_result(failure: PaymentFailure) -> CallToolResult:
    reported = tool_failure(failure, "MCP")
    assert reported is not None
    return failed_result(reported)


def _renamed(
    handler: Callable[[], Awaitable[CallToolResult | str]], name: str
) -> Callable[[], Awaitable[CallToolResult | str]]:
    async def run() -> CallToolResult | str:
        return await handler()

    run.__name__ = run.__qualname__ = name
    return run

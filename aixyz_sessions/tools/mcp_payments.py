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
from dataclasses import dataclass, field
from typing import Any

from mcp.types import CallToolResult
from x402.mcp import PaymentWrapperHooks, create_payment_wrapper
from x402.mcp.types import ServerHookContext, SettlementContext
from x402.schemas import ResourceConfig, ResourceInfo

from ..context import payer_context
from ..exceptions import SessionStoreError
from ..payments.authorization import NOT_VERIFIED, Authorization, Verification, verification
from ..payments.facilitators import FacilitatorTimeout, facilitator_failures
from ..payments.runtime import PaymentRuntime, get_runtime
from ..store_failures import StoreFailure, store_failure
from .mcp_results import error_result, failure_result, result_text, with_payment_error
from .registry import Tool

__all__ = ["REPLAYED", "PaidToolRunner", "tool_resource_url"]

#: The reason a payment-required result gives when the replay guard refuses.
REPLAYED = "payment authorization already used"

WrappedHandler = Callable[..., Awaitable[CallToolResult]]


def tool_resource_url(name: str) -> str:
    """The x402 resource a paid MCP tool sells: ``mcp://tool/<name>``."""
    return f"mcp://tool/{name}"


@dataclass
class _PaidCall:
    """What the wrapper's hooks learn during one paid call, for the code around it."""

    arguments: dict[str, Any]
    runtime: PaymentRuntime
    verified: Verification = field(default_factory=Verification)
    authorization: Authorization | None = None
    claimed: bool = False
    settled: bool = False
    refusal: str | None = None
    store_failed: StoreFailure | None = None


#: The paid call in progress in this task (the hooks and handler run inside it).
_current: ContextVar[_PaidCall | None] = ContextVar("aixyz_mcp_paid_call", default=None)


def _call() -> _PaidCall:
    call = _current.get()
    if call is None:  # pragma: no cover - only reachable by calling the wrapper directly
        raise RuntimeError("a paid MCP tool ran outside PaidToolRunner.run()")
    return call


async def _claim(context: ServerHookContext) -> bool:
    """``on_before_execution``: read the payer and claim the nonce; ``False`` blocks."""
    call = _call()
    # The payer is the address the facilitator verified (after_verify), nothing else.
    authorization = call.verified.authorization
    if authorization is None:
        call.refusal = call.verified.refusal or NOT_VERIFIED
        return False
    guard = call.runtime.replay_guard
    try:
        claimed = await guard.claim(
            authorization.payer, authorization.nonce, authorization.valid_before
        )
    except SessionStoreError as exc:
        call.store_failed = store_failure(exc, "the replay guard (MCP)")
        return False
    if not claimed:
        call.refusal = REPLAYED
        return False
    call.authorization = authorization
    call.claimed = True
    return True


async def _settled(context: SettlementContext) -> None:
    """``on_after_settlement``: the claim stays (the nonce is spent on chain now)."""
    _call().settled = True


class PaidToolRunner:
    """Runs one paid registry tool through ``x402.mcp.create_payment_wrapper``."""

    def __init__(self, tool: Tool) -> None:
        if tool.price is None:
            raise ValueError(f"tool {tool.name!r} has no price")
        self.tool = tool
        self._lock = threading.Lock()
        self._built: tuple[PaymentRuntime, WrappedHandler] | None = None

    async def _handler(self) -> CallToolResult | str:
        """The tool itself, run by the wrapper once the payment verified and was claimed."""
        call = _call()
        assert call.authorization is not None
        try:
            async with payer_context(call.authorization.payer):
                value = await self.tool.call(call.arguments)
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
            tool = self.tool
            assert tool.price is not None
            accepts = runtime.server.build_payment_requirements(
                ResourceConfig(
                    scheme="exact",
                    pay_to=runtime.config.pay_to,
                    price=tool.price,
                    network=runtime.config.network,
                )
            )
            resource = ResourceInfo(
                url=tool_resource_url(tool.name),
                description=tool.description or f"Tool: {tool.name}",
                mime_type="application/json",
            )
            hooks = PaymentWrapperHooks(on_before_execution=_claim, on_after_settlement=_settled)
            decorate = create_payment_wrapper(
                runtime.server, accepts=accepts, resource=resource, hooks=hooks
            )
            handler = self._handler
            # The wrapper names hook contexts after the handler.
            named: Callable[[], Awaitable[CallToolResult | str]] = _renamed(handler, tool.name)
            wrapped: WrappedHandler = decorate(named)
            self._built = (runtime, wrapped)
            return wrapped

    async def run(self, arguments: dict[str, Any], context: Any) -> CallToolResult:
        """One paid call: the SDK's payment flow around the tool, replay guard included.

        ``arguments`` are already valid (checked before any payment, so nobody
        pays for a call that cannot run); ``context`` is FastMCP's request
        ``Context``, from which the wrapper reads ``_meta["x402/payment"]``.
        """
        try:
            runtime = get_runtime()
            await runtime.ensure_initialized()
            wrapped = self.wrapped(runtime)
        except Exception as exc:
            code = "facilitator_timeout" if isinstance(exc, FacilitatorTimeout) else None
            return error_result(
                f"tool {self.tool.name!r} cannot take payments right now: "
                f"{type(exc).__name__}: {exc}",
                {"error": code or "payments_unavailable"},
            )
        call = _PaidCall(arguments=arguments, runtime=runtime)
        token = _current.set(call)
        try:
            with facilitator_failures() as failures, verification() as call.verified:
                # Tool arguments stay out of the wrapper's kwargs: it reserves ``ctx``.
                result = await wrapped(ctx=context)
        finally:
            _current.reset(token)
            if call.claimed and not call.settled and call.authorization is not None:
                await runtime.replay_guard.release_quietly(
                    call.authorization.payer, call.authorization.nonce
                )
        if failures and not call.settled:
            code = "facilitator_timeout" if failures.timed_out else "facilitator_unavailable"
            return error_result(failures.message, {"error": code})
        if call.store_failed is not None:
            failed = call.store_failed
            return error_result(failed.message, {"error": failed.code, "message": failed.message})
        refusal = call.refusal or call.verified.refusal
        if refusal is not None:
            return with_payment_error(result, refusal)
        return result


def _renamed(
    handler: Callable[[], Awaitable[CallToolResult | str]], name: str
) -> Callable[[], Awaitable[CallToolResult | str]]:
    async def run() -> CallToolResult | str:
        return await handler()

    run.__name__ = run.__qualname__ = name
    return run

"""Agent tools: define once with ``@tool``, serve over HTTP, MCP and WebSocket.

HTTP: ``path("tools/", include("aixyz_sessions.tools.urls"))``; WebSocket:
:class:`~aixyz_sessions.tools.consumers.ToolConsumer` (mounted by
``aixyz_sessions.asgi``); any other transport: :func:`call_tool`, the payment
gate for one call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .registry import Tool, ToolArgumentsError, ToolError, ToolRegistry, registry, tool

if TYPE_CHECKING:
    from .calls import ToolCallResult, ToolPaymentError, call_tool

__all__ = [
    "Tool",
    "ToolArgumentsError",
    "ToolCallResult",
    "ToolError",
    "ToolPaymentError",
    "ToolRegistry",
    "call_tool",
    "registry",
    "tool",
]

_GATE = {"ToolCallResult", "ToolPaymentError", "call_tool"}


def __getattr__(name: str) -> Any:
    """The payment gate's names, imported on first use (they pull in the x402 SDK)."""
    if name in _GATE:
        from . import calls

        return getattr(calls, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

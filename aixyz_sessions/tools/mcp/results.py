"""How a registry tool's outcome looks as an MCP ``CallToolResult``.

One place for the shapes every MCP tool call answers with, free or paid, so
an error always reads the same: an ``isError`` result whose first text block
is a sentence a person (or a model) can act on, never a protocol error.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from mcp.types import CallToolResult, TextContent

from ..failures import ToolFailure, tool_failure
from ..registry import Tool

__all__ = [
    "error_result",
    "failed_result",
    "failure_result",
    "result_text",
    "with_payment_error",
]

logger = logging.getLogger("aixyz_sessions.tools")


def result_text(value: Any) -> str:
    """A tool's return value as MCP text: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def error_result(message: str, structured: dict[str, Any] | None = None) -> CallToolResult:
    """An ``isError`` result carrying ``message`` (and optional structured details)."""
    return CallToolResult(
        content=[TextContent(type="text", text=message)],
        structuredContent=structured,
        isError=True,
    )


def failed_result(failure: ToolFailure) -> CallToolResult:
    """An ``isError`` result: the message as text, ``{"error": code, ...}`` structured."""
    structured = {"error": failure.code, "message": failure.message, **failure.extra}
    return error_result(failure.message, structured)


def failure_result(tool: Tool, exc: Exception) -> CallToolResult:
    """The result for a tool that raised, as :func:`~.failures.tool_failure` reports it.

    Any other exception is a bug in the tool: it is logged with its
    traceback and reported by type and message as ``tool_failed``.
    """
    failure = tool_failure(exc, f"MCP tool {tool.name!r}")
    if failure is not None:
        return failed_result(failure)
    logger.exception("MCP tool %r failed", tool.name, exc_info=exc)
    message = f"tool {tool.name!r} failed: {type(exc).__name__}: {exc}"
    return error_result(message, {"error": "tool_failed", "message": message})


def with_payment_error(result: CallToolResult, reason: str) -> CallToolResult:
    """A payment-required result from the SDK with its ``error`` replaced by ``reason``.

    The SDK's wrapper says only "Execution blocked by hook" when the replay
    guard refuses an authorization; the client deserves the real reason.
    """
    structured = result.structuredContent
    if not isinstance(structured, dict) or "accepts" not in structured:
        return result
    payment_required = {**structured, "error": reason}
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(payment_required))],
        structuredContent=payment_required,
        isError=True,
    )

"""How a tool call that failed is reported: one mapping for HTTP, WebSocket and MCP.

Every transport turns an exception raised by validation, payment or the tool
into a :class:`ToolFailure` here, then writes it in its own shape (HTTP:
status and ``{"error": code, "message", "errors"?}``; WebSocket: ``{"code",
"message", "errors"?, ...}``; MCP: an ``isError`` result with the same
structured content). An exception that is none of these is a bug in the
tool: :func:`tool_failure` returns ``None`` and the transport logs it with
its traceback and answers ``internal_error``/``tool_failed``.

=======================  ======  =============================================
code                     status  cause
=======================  ======  =============================================
``invalid_arguments``    400     arguments against the schema, or a value the
                                 session store refused (``errors`` names them)
``tool_error``           422     the tool raised :class:`ToolError`
payment codes            4xx/5xx :class:`~aixyz_sessions.payments.failures.PaymentFailure`
store codes              503/500 :class:`~aixyz_sessions.SessionStoreError`
=======================  ======  =============================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..exceptions import SessionArgumentError, SessionStoreError
from ..payments.failures import PaymentFailure
from .registry import ToolArgumentsError, ToolError

__all__ = ["INVALID_ARGUMENTS", "TOOL_ERROR", "ToolFailure", "tool_failure"]

INVALID_ARGUMENTS = "invalid_arguments"
TOOL_ERROR = "tool_error"


@dataclass(frozen=True)
class ToolFailure:
    """A failed tool call as every transport reports it."""

    code: str
    status: int
    message: str
    #: Extra fields of the error (``errors``, ``payment_required``, ...).
    extra: dict[str, Any] = field(default_factory=dict)
    retry_after: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"code", "message", ...extra}``."""
        return {"code": self.code, "message": self.message, **self.extra}


def invalid_arguments(message: str, errors: list[dict[str, str]] | None = None) -> ToolFailure:
    """400 ``invalid_arguments``; ``errors`` defaults to one entry for the whole call."""
    return ToolFailure(
        INVALID_ARGUMENTS, 400, message, {"errors": errors or [{"field": "", "message": message}]}
    )


def tool_failure(exc: BaseException, where: str) -> ToolFailure | None:
    """The report for ``exc`` raised by a tool call, or ``None`` for a bug."""
    if isinstance(exc, ToolArgumentsError):
        return invalid_arguments(str(exc), exc.errors)
    if isinstance(exc, SessionArgumentError):  # the store refused a value from the arguments
        return invalid_arguments(str(exc))
    if isinstance(exc, SessionStoreError):
        exc = PaymentFailure.store(exc, where)
    if isinstance(exc, PaymentFailure):
        extra = {k: v for k, v in exc.to_dict().items() if k not in ("code", "message")}
        return ToolFailure(exc.code, exc.status, exc.message, extra, exc.retry_after)
    if isinstance(exc, ToolError):
        return ToolFailure(TOOL_ERROR, 422, str(exc) or type(exc).__name__)
    return None

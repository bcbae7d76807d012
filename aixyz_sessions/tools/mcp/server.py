"""A FastMCP server that serves the tool registry as it is.

FastMCP derives a tool's input schema from the function's signature and
validates with its own model. Registry tools already carry their schema and
validation (:meth:`Tool.validate`), and may be paid, so each one is added as
a :class:`RegistryTool`: a FastMCP ``Tool`` that advertises
``Tool.input_schema`` unchanged and whose ``run`` validates with the
registry, binds the payer context, and turns every failure into an
``isError`` result (never a protocol error).
"""

from __future__ import annotations

import copy
from typing import Any

from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.tools import Tool as FastMCPTool
from mcp.server.fastmcp.utilities.func_metadata import func_metadata
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import CallToolResult
from pydantic import PrivateAttr

from ...payments.failures import PaymentFailure
from ..calls import call_validated
from ..registry import Tool, ToolArgumentsError, ToolRegistry, registry
from .logging_guard import host_logging_untouched, route_module_logging
from .payments import (
    failed_payment_result,
    paid_result,
    payment_of,
    request_meta,
    tool_resource_url,
)
from .results import failure_result

__all__ = ["MCP_PATH", "SERVER_NAME", "SIGN_IN_META", "RegistryTool", "build_mcp_server"]

#: The HTTP path of the Streamable HTTP endpoint.
MCP_PATH = "/mcp"
#: The ``_meta`` key of a tool call that carries a returning payer's sign-in (the
#: ``SIGN-IN-WITH-X`` payload object or its base64 form); the x402 MCP transport
#: defines none, so this one is ours, named like its ``x402/payment``.
SIGN_IN_META = "x402/sign-in"
SERVER_NAME = "aixyz-sessions"


def _not_called() -> None:
    """Stands in for ``FastMCPTool.fn``: :meth:`RegistryTool.run` never calls it."""


_NO_ARGUMENTS = func_metadata(_not_called, structured_output=False)


class RegistryTool(FastMCPTool):
    """A registry :class:`~aixyz_sessions.tools.Tool` as a FastMCP tool."""

    _tool: Tool = PrivateAttr()

    @classmethod
    def of(cls, tool: Tool) -> RegistryTool:
        """The FastMCP tool for ``tool``: same name, description and input schema."""
        item = cls(
            fn=_not_called,
            name=tool.name,
            title=None,
            description=tool.description,
            parameters=copy.deepcopy(tool.input_schema),
            fn_metadata=_NO_ARGUMENTS,
            is_async=True,
            context_kwarg=None,
            annotations=None,
        )
        item._tool = tool
        return item

    @property
    def tool(self) -> Tool:
        """The registry tool this runs."""
        return self._tool

    async def run(
        self,
        arguments: dict[str, Any],
        context: Any = None,
        convert_result: bool = False,
    ) -> CallToolResult:
        """Validate, then run free (no payer) or through x402; always a ``CallToolResult``.

        Arguments are checked before any payment is asked for or verified, so
        a call that cannot run never costs anything.
        """
        tool = self._tool
        try:
            kwargs = tool.validate(arguments)
        except ToolArgumentsError as exc:
            return failure_result(tool, exc)
        gated = tool.paid_spec is not None  # free tools read no payment and no sign-in
        meta = request_meta(context) if gated else {}
        try:
            outcome = await call_validated(
                tool,
                arguments,
                kwargs,
                payment_of(meta),
                resource=tool_resource_url(tool.name),
                sign_in=meta.get(SIGN_IN_META),
                origin=_origin(context) if gated else None,
            )
        except PaymentFailure as failure:
            return failed_payment_result(tool, failure)
        except Exception as exc:
            return failure_result(tool, exc)
        return paid_result(outcome)


def _origin(context: Any) -> str | None:
    """``scheme://host`` the HTTP request that carried the MCP call reached, if any
    (see ``hosts.scope_origin``)."""
    from ...hosts import scope_origin

    try:
        scope = context.request_context.request.scope
    except (AttributeError, ValueError):
        return None
    return scope_origin(scope)


def build_mcp_server(*, tools: ToolRegistry | None = None, name: str = SERVER_NAME) -> FastMCP[Any]:
    """A stateless Streamable HTTP FastMCP server with every tool of the registry.

    The tools are taken when this runs: a tool registered later needs a new
    server (:func:`aixyz_sessions.tools.mcp.reset_mcp_server` for the served
    one). Responses are plain JSON (``json_response``): in stateless mode
    there is no session to stream notifications on, and JSON passes every
    proxy. Host checking is left to :func:`~aixyz_sessions.tools.mcp.mcp_asgi_app`,
    which applies Django's ``ALLOWED_HOSTS`` (FastMCP's own DNS-rebinding
    guard would allow only localhost).
    """
    source = registry if tools is None else tools
    route_module_logging()
    with host_logging_untouched():
        return FastMCP(
            name,
            tools=[RegistryTool.of(item) for item in source],
            stateless_http=True,
            json_response=True,
            streamable_http_path=MCP_PATH,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
            warn_on_duplicate_tools=False,
        )

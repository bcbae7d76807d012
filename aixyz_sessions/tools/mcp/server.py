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
from mcp.types import CallToolResult, TextContent
from pydantic import PrivateAttr

from ...context import payer_context
from ..registry import Tool, ToolArgumentsError, ToolRegistry, registry
from .logging_guard import host_logging_untouched, route_module_logging
from .payments import PaidToolRunner
from .results import failure_result, result_text

__all__ = ["MCP_PATH", "SERVER_NAME", "RegistryTool", "build_mcp_server"]

#: The HTTP path of the Streamable HTTP endpoint.
MCP_PATH = "/mcp"
SERVER_NAME = "aixyz-sessions"


def _not_called() -> None:
    """Stands in for ``FastMCPTool.fn``: :meth:`RegistryTool.run` never calls it."""


_NO_ARGUMENTS = func_metadata(_not_called, structured_output=False)


class RegistryTool(FastMCPTool):
    """A registry :class:`~aixyz_sessions.tools.Tool` as a FastMCP tool."""

    _tool: Tool = PrivateAttr()
    _paid: PaidToolRunner | None = PrivateAttr(default=None)

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
        item._paid = PaidToolRunner(tool) if tool.paid else None
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
            tool.validate(arguments)
        except ToolArgumentsError as exc:
            return failure_result(tool, exc)
        if self._paid is not None:
            return await self._paid.run(arguments, context)
        try:
            async with payer_context(None):
                value = await tool.call(arguments)
        except Exception as exc:
            return failure_result(tool, exc)
        return CallToolResult(content=[TextContent(type="text", text=result_text(value))])


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

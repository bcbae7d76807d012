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
from .payments import PaidToolRunner, request_meta, tool_resource_url
from .results import failure_result, result_text

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
            kwargs = tool.validate(arguments)
        except ToolArgumentsError as exc:
            return failure_result(tool, exc)
        spec = tool.paid_spec
        if spec is not None and spec.takes_sign_in:
            credential = request_meta(context).get(SIGN_IN_META)
            if credential is not None or not spec.charges:
                return await self._signed_in(arguments, credential, context)
        if self._paid is not None:
            result = await self._paid.run(arguments, kwargs, context)
            if spec is not None and spec.takes_sign_in:
                result = _offering_sign_in(result, tool, _origin(context))
            return result
        try:
            async with payer_context(None):
                value = await tool.run(kwargs)
        except Exception as exc:
            return failure_result(tool, exc)
        return CallToolResult(content=[TextContent(type="text", text=result_text(value))])

    async def _signed_in(
        self, arguments: dict[str, Any], credential: object, context: Any
    ) -> CallToolResult:
        """A sign-in instead of a payment: the paid-call core's sign-in, as on every transport.

        Without a credential (a sign-in-only tool) the error result carries
        ``payment_required`` with the sign-in-with-x extension offered.
        """
        from ..payment_gate import call_tool

        tool = self._tool
        try:
            outcome = await call_tool(
                tool,
                arguments,
                sign_in=credential,
                origin=_origin(context),
                resource=tool_resource_url(tool.name),
            )
        except Exception as exc:
            return failure_result(tool, exc)
        return CallToolResult(content=[TextContent(type="text", text=result_text(outcome.result))])


def _offering_sign_in(result: CallToolResult, tool: Tool, origin: str | None) -> CallToolResult:
    """The x402 payment-required result with the sign-in-with-x extension offered too.

    The SDK's MCP wrapper knows no sign-in; a tool that takes one adds its
    offer (fresh nonce) to ``structuredContent`` and to the JSON text, where
    x402 MCP clients read the ``PaymentRequired``.
    """
    import json

    from x402.schemas import PaymentRequired

    from ...payments.failures import PaymentFailure
    from ...payments.paid_call import sign_in_offer
    from ...payments.runtime import get_runtime

    structured = result.structuredContent
    if not result.isError or not isinstance(structured, dict) or "accepts" not in structured:
        return result
    spec = tool.paid_spec
    assert spec is not None
    try:
        required = PaymentRequired.model_validate(structured)
    except ValueError:  # pragma: no cover - the SDK built it
        return result
    url = required.resource.url if required.resource else tool_resource_url(tool.name)
    try:
        offered = sign_in_offer(
            get_runtime(),
            spec,
            required,
            url=url,
            request_path=f"/tools/{tool.name}",
            origin=origin,
        )
    except PaymentFailure:  # no origin known: the payment alone is offered
        return result
    extensions = offered.model_dump(by_alias=True, exclude_none=True)["extensions"]
    structured = {**structured, "extensions": extensions}
    content = list(result.content)
    if content and isinstance(content[0], TextContent):
        try:
            shown = json.loads(content[0].text)
        except ValueError:
            shown = None
        if isinstance(shown, dict) and "accepts" in shown:
            content[0] = TextContent(
                type="text", text=json.dumps({**shown, "extensions": extensions})
            )
    return result.model_copy(update={"structuredContent": structured, "content": content})


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

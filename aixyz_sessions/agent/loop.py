"""``ToolLoopAgent``: a model that calls the registered tools, a few steps at a time.

The counterpart of the TypeScript template's ``ToolLoopAgent``: instructions,
a model name, an OpenAI-compatible chat-completions client (the ``openai``
package, ``pip install "aixyz-sessions[agent]"``), the registered tools
offered as functions with their JSON schemas, and at most ``max_steps``
model calls and ``max_tool_calls`` tool calls per message: the work one paid
turn can cause is bounded. Tool calls run like direct invocations:
validated, inside the payer's session (staged with the paid message, so they
count only if it settles). Name an instance in ``AIXYZ_AGENT["AGENT"]``::

    # myapp/agents.py
    from aixyz_sessions.agent.loop import ToolLoopAgent

    session_agent = ToolLoopAgent(
        instructions="You store and read content in the user's session.",
        model="gpt-4o-mini",
        tools=["put-content", "get-content"],   # default: every registered tool
    )

The client reads ``OPENAI_API_KEY`` and ``OPENAI_BASE_URL`` from the
environment unless ``api_key``/``base_url`` are given.

A turn in which the model ran is a turn the payer pays for (the operator
pays the model): reaching ``max_steps`` ends the turn with what the model
said so far, and so does a model that fails after it has answered once. Only
a model that cannot answer at all (unreachable, refused on the first call)
fails the task, uncharged, with a readable :class:`AgentError`. A tool that
fails is reported to the model, which may recover.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from typing import Any

from .. import bounded_json
from ..tools.failures import tool_failure
from ..tools.registry import Tool, ToolRegistry, registry

__all__ = ["AgentError", "ToolLoopAgent"]

_FUNCTION_NAME = re.compile(r"[^a-zA-Z0-9_-]")


class AgentError(Exception):
    """The model could not answer this message; the message says why (for the task)."""


class ToolLoopAgent:
    """Instructions, a model and the registered tools, called in a loop (see the module)."""

    def __init__(
        self,
        *,
        instructions: str,
        model: str,
        tools: Iterable[str] | None = None,
        max_steps: int = 10,
        max_tool_calls: int = 20,
        base_url: str | None = None,
        api_key: str | None = None,
        registry: ToolRegistry = registry,
    ) -> None:
        for name, value in (("max_steps", max_steps), ("max_tool_calls", max_tool_calls)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.instructions = instructions
        self.model = model
        self.tool_names = None if tools is None else list(tools)
        self.max_steps = max_steps
        self.max_tool_calls = max_tool_calls
        self.base_url = base_url
        self.api_key = api_key
        self.registry = registry

    def __repr__(self) -> str:
        return f"<ToolLoopAgent model={self.model!r} max_steps={self.max_steps}>"

    def tools(self) -> dict[str, Tool]:
        """The offered tools by function name (tool names, with other characters as ``_``)."""
        names = self.tool_names if self.tool_names is not None else [t.name for t in self.registry]
        offered: dict[str, Tool] = {}
        for name in names:
            item = self.registry.get(name)
            if item is not None:
                offered[_FUNCTION_NAME.sub("_", name)[:64]] = item
        return offered

    def _client(self) -> Any:
        try:
            from openai import AsyncOpenAI
        except ImportError:
            raise AgentError(
                'ToolLoopAgent needs the openai package: pip install "aixyz-sessions[agent]"'
            ) from None
        api_key = self.api_key or os.environ.get("OPENAI_API_KEY")
        if not api_key:
            raise AgentError("no model is configured: set OPENAI_API_KEY (and OPENAI_BASE_URL)")
        base_url = self.base_url or os.environ.get("OPENAI_BASE_URL") or None
        return AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=60)

    async def __call__(self, text: str, context: Any = None) -> str:
        """Answer one message: ask the model, run the tools it calls, until it answers."""
        offered = self.tools()
        functions = [
            {
                "type": "function",
                "function": {
                    "name": name,
                    "description": item.description or item.name,
                    "parameters": item.input_schema or {"type": "object", "properties": {}},
                },
            }
            for name, item in offered.items()
        ]
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": self.instructions},
            {"role": "user", "content": text},
        ]
        client = self._client()
        said = ""  # what the model has said so far: the turn's answer if it stops early
        calls_left = self.max_tool_calls
        for step in range(self.max_steps):
            try:
                reply = await self._ask(client, messages, functions)
            except AgentError as exc:
                if step == 0:
                    raise  # the model never ran: nothing to charge for
                return _partial(said, f"the model failed after {step} step(s): {exc}")
            said = str(reply.content or "") or said
            calls = reply.tool_calls or []
            if not calls:
                return said
            messages.append(reply.model_dump(exclude_none=True))
            for call in calls:
                if calls_left > 0:
                    calls_left -= 1
                    result = await self._run(offered, call.function.name, call.function.arguments)
                else:
                    result = {
                        "error": "tool_call_limit",
                        "message": f"at most {self.max_tool_calls} tool calls per message",
                    }
                messages.append(
                    {"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)}
                )
        return _partial(said, f"stopped after {self.max_steps} model steps")

    async def _ask(self, client: Any, messages: list[dict[str, Any]], functions: Any) -> Any:
        import openai

        try:
            response = await client.chat.completions.create(
                model=self.model, messages=messages, tools=functions or openai.omit
            )
        except openai.OpenAIError as exc:
            raise AgentError(f"the model failed: {type(exc).__name__}: {exc}") from None
        if not response.choices:
            raise AgentError("the model returned no answer")
        return response.choices[0].message

    @staticmethod
    async def _run(offered: dict[str, Tool], name: str, arguments: str) -> Any:
        """One tool call; its result, or ``{"error", "message"}`` for the model to read."""
        item = offered.get(name)
        if item is None:
            return {"error": "unknown_tool", "message": f"no tool named {name!r}"}
        try:
            parsed = bounded_json.loads(arguments or "{}")
        except ValueError:
            return {"error": "invalid_arguments", "message": "arguments are not JSON"}
        try:
            return await item.call(parsed)
        except Exception as exc:
            failure = tool_failure(exc, f"agent tool {item.name!r}")
            if failure is None:
                raise
            return {"error": failure.code, "message": failure.message}


def _partial(said: str, why: str) -> str:
    """The answer of a turn the model did not finish: what it said, and why it ended."""
    return f"{said}\n\n({why})" if said else f"({why} without a final answer)"

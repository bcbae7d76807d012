"""What the agent does with one A2A message, inside the payer's session.

* A message whose parts hold a data part ``{"tool": <name>, "arguments":
  {...}}`` invokes that registered tool directly (no model), with the same
  argument validation as every other transport; the task completes with the
  result as a data part of an artifact named after the tool, or fails with the error
  message. Several such parts run in order.
* Any other message goes to ``AIXYZ_AGENT["AGENT"]`` (an async callable
  ``(text, context) -> str``, such as a
  :class:`~aixyz_sessions.agent.loop.ToolLoopAgent`) when one is configured;
  its :class:`~aixyz_sessions.agent.loop.AgentError` fails the task with the
  reason. Without one, the reply says how to invoke a tool.

The payer binding (:func:`~aixyz_sessions.payer_context`) comes from the
HTTP request the message arrived in: the SDK runs this executor in a task
created inside it, which copies the binding. The message's price covers what
its tools do: a tool's own price is for calling it on the other transports.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from a2a.helpers.proto_helpers import (
    get_data_parts,
    get_message_text,
    new_data_part,
    new_task_from_user_message,
    new_text_message,
    new_text_part,
)
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater

from ..tools.failures import tool_failure
from ..tools.registry import ToolRegistry, registry
from .loop import AgentError

__all__ = ["Answer", "RegistryAgentExecutor", "ToolInvocationFailed"]

#: ``AIXYZ_AGENT["AGENT"]``: the answer to a text message.
Answer = Callable[[str, RequestContext], Awaitable[str]]

HELP = (
    "This agent runs its tools directly: send a data part "
    '{"tool": "<name>", "arguments": {...}} (the agent card lists the tools as skills). '
    "No model is configured for text messages: the server sets AIXYZ_AGENT['AGENT'] "
    "(a ToolLoopAgent with OPENAI_API_KEY) to answer them."
)


class ToolInvocationFailed(Exception):
    """A direct tool invocation that cannot run, or whose tool failed; the message says why."""


def tool_calls(parts: Any) -> list[dict[str, Any]]:
    """The data parts of a message that invoke a tool (``{"tool": ..., ...}``)."""
    return [d for d in get_data_parts(parts) if isinstance(d, dict) and "tool" in d]


class RegistryAgentExecutor(AgentExecutor):
    """Direct tool invocations, else the configured answer, else a help text."""

    def __init__(self, *, tools: ToolRegistry = registry, answer: Answer | None = None) -> None:
        self.tools = tools
        self.answer = answer

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        message = context.message
        assert message is not None
        task = context.current_task
        if task is None:
            task = new_task_from_user_message(message)
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        try:
            calls = tool_calls(message.parts)
            if calls:
                for call in calls:
                    name, result = await self._invoke(call)
                    await updater.add_artifact([new_data_part(result)], name=name)
            else:
                text = (
                    HELP
                    if self.answer is None
                    else await self.answer(get_message_text(message), context)
                )
                await updater.add_artifact([new_text_part(text)], name="answer")
        except (ToolInvocationFailed, AgentError) as exc:
            await updater.failed(message=new_text_message(str(exc)))
            return
        await updater.complete()

    async def _invoke(self, call: dict[str, Any]) -> tuple[str, Any]:
        name = call.get("tool")
        if not isinstance(name, str):
            raise ToolInvocationFailed("'tool' must be a tool name (a string)")
        item = self.tools.get(name)
        if item is None:
            raise ToolInvocationFailed(f"no tool named {name!r}")
        arguments = call.get("arguments", {})
        try:
            return name, await item.call(arguments)
        except Exception as exc:
            failure = tool_failure(exc, f"A2A tool {name!r}")
            if failure is None:
                raise  # a bug in the tool: the SDK fails the task
            raise ToolInvocationFailed(f"{failure.code}: {failure.message}") from exc

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Direct invocations finish quickly; a task that is still running is cancelled."""
        if context.current_task is not None:
            updater = TaskUpdater(
                event_queue, context.current_task.id, context.current_task.context_id
            )
            await updater.cancel()

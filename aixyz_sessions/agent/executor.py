"""What the agent does with one A2A message, inside the payer's session.

It runs what the message was priced for (:func:`~aixyz_sessions.agent.turns.asked`,
see :mod:`~aixyz_sessions.agent.asks`):

* a direct tool invocation runs that one registered tool with its validated
  arguments (no model); the task completes with the tool's result as a data
  part of an artifact named after the tool, or fails with the error message;
* a text turn goes to ``AIXYZ_AGENT["AGENT"]`` (an async callable
  ``(text, context) -> str``, such as a
  :class:`~aixyz_sessions.agent.loop.ToolLoopAgent`); its
  :class:`~aixyz_sessions.agent.loop.AgentError` fails the task with the
  reason.

The payer binding (:func:`~aixyz_sessions.payer_context`) comes from the
HTTP request the message arrived in: the SDK runs this executor in a task
created inside it, which copies the binding, and the priced ask with it.
The executor tells the request's turn (:mod:`~aixyz_sessions.agent.turns`)
when the work starts and when it completed: that, not what the answer says,
decides the charge; and a request that ends early stops it. It reads no
message itself: outside a priced turn (the SDK driven without the ``/agent``
view) a message fails, since nothing decided what it may run.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from a2a.helpers.proto_helpers import (
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
from ..tracing import current_span_set, span
from .asks import HELP, Ask
from .loop import AgentError
from .turns import asked, completed, started

__all__ = ["Answer", "RegistryAgentExecutor", "ToolInvocationFailed"]

#: ``AIXYZ_AGENT["AGENT"]``: the answer to a text message.
Answer = Callable[[str, RequestContext], Awaitable[str]]


class ToolInvocationFailed(Exception):
    """A direct tool invocation that cannot run, or whose tool failed; the message says why."""


def _agent_name() -> str:
    from .conf import get_agent_config

    try:
        return get_agent_config().name
    except Exception:  # a setting the check reports; the span still opens
        return "agent"


def _turn_attributes(name: str, context_id: str) -> dict[str, Any]:
    """The OpenTelemetry GenAI attributes of the ``invoke_agent`` span."""
    return {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": name,
        "gen_ai.conversation.id": context_id or None,
    }


#: Artifact metadata key of a tool result's own JSON (see :func:`~.views.exact_json`).
EXACT_JSON = "aixyz.json"


class RegistryAgentExecutor(AgentExecutor):
    """A direct tool invocation, else the configured answer (see the module)."""

    def __init__(self, *, answer: Answer | None = None) -> None:
        self.answer = answer

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        started()  # the payment is spent from here; stopped with the request that paid
        message = context.message
        assert message is not None
        task = context.current_task
        if task is None:
            task = new_task_from_user_message(message)
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        name = _agent_name()
        with span(f"invoke_agent {name}", _turn_attributes(name, task.context_id)):
            if not await self._answer(message, context, updater):
                return
        completed()  # before the event: the answer may reach the view before this task resumes
        await updater.complete()

    async def _answer(self, message: Any, context: RequestContext, updater: TaskUpdater) -> bool:
        """Run the ask and add its answer as an artifact; ``False``: the task failed."""
        try:
            ask = asked()
            if ask is None:
                raise ToolInvocationFailed("no priced ask: messages are run by the /agent view")
            if ask.tool is not None:
                result = await self._invoke(ask)
                await updater.add_artifact(
                    [new_data_part(result)],
                    name=ask.tool.name,
                    # A data part is a protobuf Struct (every number a double): the result's
                    # own JSON travels beside it, and the view answers with that.
                    metadata={EXACT_JSON: json.dumps(result)},
                )
            else:
                if self.answer is None:
                    raise ToolInvocationFailed(HELP)
                text = await self.answer(get_message_text(message), context)
                await updater.add_artifact([new_text_part(text)], name="answer")
        except (ToolInvocationFailed, AgentError) as exc:
            current_span_set({"error.type": type(exc).__name__})
            await updater.failed(message=new_text_message(str(exc)))
            return False
        return True

    async def _invoke(self, ask: Ask) -> Any:
        assert ask.tool is not None
        try:
            return await ask.tool.run(ask.arguments)
        except Exception as exc:
            failure = tool_failure(exc, f"A2A tool {ask.tool.name!r}")
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

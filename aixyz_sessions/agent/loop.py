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

Metered turns (``AIXYZ_AGENT["UPTO"]`` with ``"TOKEN_PRICES"``): the loop
adds up the ``usage`` the model reports at every step (``prompt_tokens``,
``completion_tokens``) and, when the turn ends (an answer, ``max_steps``, a
model that failed after it ran), charges what those tokens cost at the
rates the turn was priced with, capped at the payer's maximum
(:func:`~aixyz_sessions.agent.turns.charge_tokens`). A step whose answer
reports no usage cannot be measured: such a turn charges nothing and so
settles its maximum. The rates are the setting's, never this object's: one
agent, one price list. A fixed turn price covers the tools the model calls
(``manage.py check`` warns, ``W207``, when they may cost more); a metered
turn adds each tool call that succeeded, at its own price (an ``upto`` tool
at what its ``charge()`` reported), to its tokens, capped at the maximum as
the tokens are: a tool costs its own price wherever it runs.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .. import bounded_json
from ..context import get_payer, get_session
from ..metrics.instruments import record_agent_turn
from ..payments.metering import ChargeError, Meter, metering
from ..payments.options import to_atomic
from ..signals import agent_turn_finished, send
from ..staging import StagedSession
from ..tools.failures import tool_failure
from ..tools.registry import Tool, ToolRegistry, registry
from ..tracing import current_span_set, set_attributes, span
from .turns import charge_tokens, turn_token_prices

__all__ = ["AgentError", "ToolLoopAgent", "Usage"]

_FUNCTION_NAME = re.compile(r"[^a-zA-Z0-9_-]")
logger = logging.getLogger("aixyz_sessions.agent")


class AgentError(Exception):
    """The model could not answer this message; the message says why (for the task)."""


@dataclass
class Usage:
    """The tokens a turn's model steps reported (``measured``: every step reported them)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    measured: bool = True
    #: Dollars of the tools the model called that succeeded, each at its own price
    #: (a metered turn adds them to its tokens: a tool costs its price wherever it runs).
    tools: Decimal = Decimal(0)

    def add(self, usage: Any) -> None:
        """Add one step's ``usage`` (an answer without it leaves the turn unmeasured)."""
        prompt = _count(getattr(usage, "prompt_tokens", None))
        completion = _count(getattr(usage, "completion_tokens", None))
        if prompt is None or completion is None:
            self.measured = False
            return
        self.prompt_tokens += prompt
        self.completion_tokens += completion


def _count(value: object) -> int | None:
    """A token count the model reported (``None``: none, or not a count)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


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

    @property
    def _chat_attributes(self) -> dict[str, Any]:
        """The OpenTelemetry GenAI attributes of a model step's ``chat`` span."""
        return {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": self.model,
        }

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
        """Answer one message: ask the model, run the tools it calls, until it answers.

        A metered turn is charged for its tokens when it ends (see the module).
        """
        usage = Usage()
        answer = await self._turn(text, usage)
        current_span_set(  # the invoke_agent span of the turn (GenAI conventions)
            {
                "gen_ai.request.model": self.model,
                "gen_ai.usage.input_tokens": usage.prompt_tokens,
                "gen_ai.usage.output_tokens": usage.completion_tokens,
            }
        )
        record_agent_turn(self.model, usage.prompt_tokens, usage.completion_tokens)
        send(
            agent_turn_finished,
            ToolLoopAgent,
            payer=get_payer(),
            input_tokens=usage.prompt_tokens,
            output_tokens=usage.completion_tokens,
            measured=usage.measured,
            tools=usage.tools,
        )
        if turn_token_prices() is None:
            return answer  # not metered by tokens: the turn costs its price
        if usage.measured:
            charge_tokens(usage.prompt_tokens, usage.completion_tokens, tools=usage.tools)
        else:
            logger.warning(
                "%r: the model did not report its token usage at every step: "
                "this metered turn settles its maximum",
                self,
            )
        return answer

    async def _turn(self, text: str, usage: Usage) -> str:
        """The loop of one turn; every step's token ``usage`` is added up."""
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
                reply = await self._ask(client, messages, functions, usage)
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
                    result = await self._run(
                        offered, call.function.name, call.function.arguments, usage
                    )
                else:
                    result = {
                        "error": "tool_call_limit",
                        "message": f"at most {self.max_tool_calls} tool calls per message",
                    }
                messages.append(
                    {"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)}
                )
        return _partial(said, f"stopped after {self.max_steps} model steps")

    async def _ask(
        self, client: Any, messages: list[dict[str, Any]], functions: Any, usage: Usage
    ) -> Any:
        """One model step: its message (``AgentError`` when it has none); its usage is added."""
        import openai

        with span(f"chat {self.model}", self._chat_attributes, client=True) as step:
            try:
                response = await client.chat.completions.create(
                    model=self.model, messages=messages, tools=functions or openai.omit
                )
            except openai.OpenAIError as exc:
                set_attributes(step, {"error.type": type(exc).__name__})
                raise AgentError(f"the model failed: {type(exc).__name__}: {exc}") from None
            reported = response.usage
            set_attributes(
                step,
                {
                    "gen_ai.response.model": getattr(response, "model", None),
                    "gen_ai.usage.input_tokens": _count(getattr(reported, "prompt_tokens", None)),
                    "gen_ai.usage.output_tokens": _count(
                        getattr(reported, "completion_tokens", None)
                    ),
                },
            )
        usage.add(response.usage)
        if not response.choices:
            raise AgentError("the model returned no answer")
        return response.choices[0].message

    @staticmethod
    async def _run(offered: dict[str, Tool], name: str, arguments: str, usage: Usage) -> Any:
        """One tool call; its result, or ``{"error", "message"}`` for the model to read.

        A call that succeeds adds its tool's price (its highest dollar option)
        to ``usage.tools``: for an ``upto`` tool what it charged (its maximum
        when it charged nothing).
        """
        item = offered.get(name)
        if item is None:
            return {"error": "unknown_tool", "message": f"no tool named {name!r}"}
        try:
            parsed = bounded_json.loads(arguments or "{}")
        except ValueError:
            return {"error": "invalid_arguments", "message": "arguments are not JSON"}
        session = get_session()
        point = session.savepoint() if isinstance(session, StagedSession) else None
        try:
            spec = item.paid_spec if item.paid else None
            price = (spec.most_dollars() if spec is not None else None) or Decimal(0)
            meter = _tool_meter(item, price)
            with metering(meter):  # the turn pays for its tools: see the module
                result = await item.call(parsed)
            usage.tools += _tool_cost(price, meter)
            return result
        except Exception as exc:
            # A tool call that failed keeps none of its writes, as on every transport;
            # the turn goes on (the model ran: it is charged) and the model reads why.
            if point is not None:
                assert isinstance(session, StagedSession)
                session.rollback(point)
            if isinstance(exc, ChargeError):
                return {"error": "charge_refused", "message": str(exc)}
            failure = tool_failure(exc, f"agent tool {item.name!r}")
            if failure is None:
                logger.exception("agent tool %r failed inside a turn", item.name)
                return {"error": "tool_failed", "message": f"the tool {item.name!r} failed"}
            return {"error": failure.code, "message": failure.message}


#: Decimals a tool's dollar price is metered in inside a turn (USDC's).
_TOOL_DECIMALS = 6


def _tool_meter(item: Tool, price: Decimal) -> Meter | None:
    """What an ``upto`` tool's ``charge()`` reports to inside a turn (``None``: no meter)."""
    spec = item.paid_spec
    if spec is None or not spec.metered or not price:
        return None
    return Meter(scheme="upto", maximum=to_atomic(price, _TOOL_DECIMALS), decimals=_TOOL_DECIMALS)


def _tool_cost(price: Decimal, meter: Meter | None) -> Decimal:
    """What one tool call adds to a metered turn, in dollars."""
    if meter is None or meter.charged is None:
        return price
    return Decimal(meter.charged) / (Decimal(10) ** _TOOL_DECIMALS)


def _partial(said: str, why: str) -> str:
    """The answer of a turn the model did not finish: what it said, and why it ended."""
    return f"{said}\n\n({why})" if said else f"({why} without a final answer)"

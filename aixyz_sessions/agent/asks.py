"""What one A2A message asks for, read once, before any payment: its price and what runs.

A ``SendMessage``/``message/send`` (or its streaming form) either invokes
one registered tool directly (a data part ``{"tool": <name>, "arguments":
{...}}``) or asks the configured agent (a text turn). :func:`read_ask`
decides which from the JSON-RPC object the middleware prices:

* a message invokes at most one tool: each tool costs its own price, so one
  message cannot buy several (nor a thousand);
* the tool must exist and its arguments must validate against its schema;
* a text turn needs ``AIXYZ_AGENT["AGENT"]``: without one, the message is
  refused with how to invoke a tool instead of being charged for that advice;
  its text is at most :data:`MAX_TEXT_CHARS` (the model reads it at every step);
* the ids a task keeps (``messageId``, ``contextId``, ``taskId``,
  ``referenceTaskIds``) are short strings: at most :data:`MAX_ID_CHARS` each,
  :data:`MAX_REFERENCES` references (a task is kept for days, and indexed);
* the price is the tool's own (:attr:`Tool.paid_spec`, taken here for a
  payment only) for an invocation (a metered tool settles what it charges),
  and the agent's turn price (``AIXYZ_AGENT["PRICE"]``, ``"UPTO"`` or
  ``"ACCEPTS"``) for a text turn and for a tool that has no price of its own
  (the task it leaves is kept for its payer, and keeping it is not free; a
  metered turn price settles its maximum there, since nothing is metered:
  give such a tool a price of its own);
* a text turn carries the agent's ``TOKEN_PRICES`` (:attr:`Ask.token_prices`):
  what it settles is metered on what was priced, not looked up again.

Every refusal is a :class:`MessageRefused` (a JSON-RPC error) given before
payment, so nothing is charged or spent. The executor then runs exactly the
:class:`Ask` that was priced (see :mod:`~aixyz_sessions.agent.turns`), never
its own reading of the message: no difference between two parsers can turn a
cheap message into an expensive turn.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any

from ..payments.decorators import PaidSpec
from ..tools.registry import Tool, ToolArgumentsError, ToolRegistry, registry
from .conf import AgentConfig, TokenPrices

__all__ = [
    "HELP",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "UNSUPPORTED",
    "Ask",
    "MessageRefused",
    "read_ask",
    "tool_parts",
]

INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
#: Longest id a message may give (a UUID is 36 characters).
MAX_ID_CHARS = 256
#: Most ``referenceTaskIds`` one message may name.
MAX_REFERENCES = 16
#: Longest text a text turn takes, in characters.
MAX_TEXT_CHARS = 100_000
#: A2A's ``UnsupportedOperationError``.
UNSUPPORTED = -32004

HELP = (
    "This agent runs its tools directly: send one data part "
    '{"tool": "<name>", "arguments": {...}} (the agent card lists the tools as skills). '
    "No model is configured for text messages: the server sets AIXYZ_AGENT['AGENT'] "
    "(a ToolLoopAgent with OPENAI_API_KEY) to answer them."
)


class MessageRefused(Exception):
    """A message that cannot run; a JSON-RPC error ``code`` with ``message`` (and ``data``)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


@dataclass(frozen=True)
class Ask:
    """What a message runs: ``tool`` with its validated ``arguments``, else a text turn.

    ``spec`` is its price (``None``: read outside a priced request);
    ``token_prices`` the rates a metered text turn is charged at (``None``:
    a tool invocation, or a turn that is not metered by its tokens).
    """

    tool: Tool | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    spec: PaidSpec | None = None
    token_prices: TokenPrices | None = None


@functools.lru_cache(maxsize=256)
def _tool_spec(spec: PaidSpec) -> PaidSpec:
    """A tool's own price, sold on ``/agent`` for a payment only (its sign-in is elsewhere)."""
    return dataclasses.replace(spec, payment_only=True)


def tool_parts(parts: object) -> list[dict[str, Any]]:
    """The data parts of a message's ``parts`` that invoke a tool (``{"tool": ..., ...}``).

    Either A2A shape: 0.3 ``{"kind": "data", "data": {...}}`` and 1.0
    ``{"data": {...}}``; a data part whose object names a ``tool`` counts,
    whatever else the part says.
    """
    if not isinstance(parts, list):
        return []
    found = []
    for part in parts:
        data = part.get("data") if isinstance(part, dict) else None
        if isinstance(data, dict) and "tool" in data:
            found.append(data)
    return found


def read_ask(rpc: dict[str, Any], config: AgentConfig, tools: ToolRegistry = registry) -> Ask:
    """What the message in ``rpc`` (a message method's JSON-RPC object) asks for.

    Raises :class:`MessageRefused` for a message that cannot run.
    """
    params = rpc.get("params")
    message = params.get("message") if isinstance(params, dict) else None
    if not isinstance(message, dict):
        raise MessageRefused(INVALID_PARAMS, "params.message must be a message object")
    _check_ids(message)
    calls = tool_parts(message.get("parts"))
    if len(calls) > 1:
        raise MessageRefused(
            INVALID_PARAMS,
            f"a message invokes at most one tool (this one names {len(calls)}): "
            "send one message per tool call",
        )
    if not calls:
        if config.agent is None:
            raise MessageRefused(UNSUPPORTED, HELP)
        if _text_chars(message.get("parts")) > MAX_TEXT_CHARS:
            raise MessageRefused(
                INVALID_PARAMS, f"a text turn takes at most {MAX_TEXT_CHARS} characters of text"
            )
        return Ask(spec=config.spec, token_prices=config.token_prices)
    call = calls[0]
    name = call.get("tool")
    if not isinstance(name, str):
        raise MessageRefused(INVALID_PARAMS, "'tool' must be a tool name (a string)")
    item = tools.get(name)
    if item is None:
        raise MessageRefused(INVALID_PARAMS, f"no tool named {name!r}")
    try:
        arguments = item.validate(call.get("arguments", {}))
    except ToolArgumentsError as exc:
        raise MessageRefused(INVALID_PARAMS, str(exc), {"errors": exc.errors}) from None
    own = item.paid_spec
    if own is not None and own.charges:
        return Ask(item, arguments, _tool_spec(own))
    return Ask(item, arguments, config.spec)


_ID_FIELDS = ("messageId", "message_id", "contextId", "context_id", "taskId", "task_id")


def _check_ids(message: dict[str, Any]) -> None:
    """The ids a message gives are short strings (see the module)."""
    for name in _ID_FIELDS:
        value = message.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > MAX_ID_CHARS):
            raise MessageRefused(
                INVALID_PARAMS,
                f"message.{name} must be a string of at most {MAX_ID_CHARS} characters",
            )
    for name in ("referenceTaskIds", "reference_task_ids"):
        references = message.get(name)
        if references is None:
            continue
        if (
            not isinstance(references, list)
            or len(references) > MAX_REFERENCES
            or not all(isinstance(r, str) and len(r) <= MAX_ID_CHARS for r in references)
        ):
            raise MessageRefused(
                INVALID_PARAMS,
                f"message.{name} must list at most {MAX_REFERENCES} ids of at most "
                f"{MAX_ID_CHARS} characters",
            )


def _text_chars(parts: object) -> int:
    """How much text the message's parts carry."""
    if not isinstance(parts, list):
        return 0
    return sum(
        len(part["text"])
        for part in parts
        if isinstance(part, dict) and isinstance(part.get("text"), str)
    )

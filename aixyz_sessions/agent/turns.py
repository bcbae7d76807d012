"""One A2A turn: the priced :class:`~aixyz_sessions.agent.asks.Ask` it runs, whether its
work started and completed, and that work stopped when the request that paid for it goes away.

What the turn *did* decides what it costs, never what its answer says: the
answer echoes the client's own message and metadata (a ``"status":
{"state": "failed"}`` anywhere in them must not make a completed turn free).
So the executor reports on the turn itself: :func:`started` when it begins
the work (before that, the SDK refused the request and the payment is not
spent), :func:`completed` when the work is done. The view charges a turn
that completed, and only that.

The SDK runs the executor in background tasks of its own (``ActiveTask``'s
producer) that outlive the request unless told otherwise. A paid request
that ends early (the client disconnected, Django cancelled the view, the
payment could not be taken) must not leave a model talking and tools running
for nobody: that work would be unpaid and, were it to finish, its result
would reach the store. So the view opens :func:`turn` around the SDK call,
the executor joins it (:func:`started`), and a turn that does not end
normally cancels what joined.

The executor runs in a task created inside the request, which copies this
module's context variable: that is how it finds the turn.

A metered text turn (``AIXYZ_AGENT["UPTO"]``, or an ``upto`` option of
``"ACCEPTS"``) settles what it used: :func:`charge_tokens` prices the
model's tokens at ``AIXYZ_AGENT["TOKEN_PRICES"]`` (the rates the turn was
priced with) and reports that with
:func:`~aixyz_sessions.payments.charge`, capped at the maximum the payer
authorized. :class:`~aixyz_sessions.agent.loop.ToolLoopAgent` calls it when
its turn ends; a plain ``AGENT`` callable calls it (or ``charge()``) itself.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..payments.metering import ChargeError, charge
from .asks import Ask
from .conf import TokenPrices

__all__ = [
    "Turn",
    "asked",
    "charge_tokens",
    "completed",
    "started",
    "turn",
    "turn_token_prices",
]

logger = logging.getLogger("aixyz_sessions.agent")

#: How long a cancelled turn's work gets to stop before it is left to the loop.
STOP_SECONDS = 5.0


@dataclass
class Turn:
    """What one paid message runs, and what became of it."""

    ask: Ask | None
    #: The executor began the work (the payment is spent from here on).
    started: bool = False
    #: The executor finished the work and completed the task (the turn is charged).
    completed: bool = False
    work: set[asyncio.Task[Any]] = field(default_factory=set)


_turn: contextvars.ContextVar[Turn | None] = contextvars.ContextVar("aixyz_a2a_turn", default=None)


def asked() -> Ask | None:
    """The ask the current turn was priced for (``None`` outside :func:`turn`)."""
    current = _turn.get()
    return None if current is None else current.ask


def started() -> None:
    """The executor begins the work: the running task joins the turn (stopped with it)."""
    current = _turn.get()
    task = asyncio.current_task()
    if current is not None:
        current.started = True
        if task is not None:
            current.work.add(task)


def completed() -> None:
    """The executor completed the task: the turn is charged."""
    current = _turn.get()
    if current is not None:
        current.completed = True


def turn_token_prices() -> TokenPrices | None:
    """The ``TOKEN_PRICES`` the current text turn is charged at (``None``: not metered by
    tokens: no rates, a direct tool invocation, or no paid turn at all)."""
    ask = asked()
    return None if ask is None or ask.tool is not None else ask.token_prices


def charge_tokens(
    prompt_tokens: int, completion_tokens: int, *, tools: Decimal = Decimal(0)
) -> int | None:
    """Charge the current text turn for its model's tokens, at ``TOKEN_PRICES``.

    ``tools`` is the dollars of the priced tools the model called in the turn
    (each at its own price, as on every other transport), added to the cost.

    ``prompt_tokens`` and ``completion_tokens`` are the turn's totals (every
    model step). Call it once, when the turn ends, and make no other charge
    in the turn: the last charge of a paid call is what settles, and the cap
    works by charging nothing (``charge()`` has no way to say "the
    maximum"), so an earlier charge would stand. What the turn settles is
    the tokens' cost, in atomic units of the paid asset (returned), or the
    maximum the payer authorized when the cost is above it: a turn's cost is
    capped, never refused. ``None``: the turn settles its price as declared
    (the maximum of an ``upto`` price): the cost was above the maximum, the
    turn has no ``TOKEN_PRICES``, or this is no paid text turn (a direct tool
    invocation, a call outside ``/agent``). A payer who chose an ``exact``
    option of ``ACCEPTS`` pays that price whatever this reports.
    """
    for value in (prompt_tokens, completion_tokens):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"token counts are ints of 0 or more, got {value!r}")
    rates = turn_token_prices()
    if rates is None:
        return None
    cost = rates.cost(prompt_tokens, completion_tokens) + tools
    try:
        return charge(cost)
    except ChargeError:
        # Above what the payer authorized: charge nothing, and an upto payment
        # settles its maximum (this is the turn's only charge: see above).
        logger.info(
            "A2A text turn: %d input and %d output tokens cost $%s, above its maximum: "
            "charged the maximum",
            prompt_tokens,
            completion_tokens,
            cost,
        )
        return None


@asynccontextmanager
async def turn(ask: Ask | None) -> AsyncIterator[Turn]:
    """The block that answers one message; its work stops if the block does not finish."""
    current = Turn(ask)
    token = _turn.set(current)
    finished = False
    try:
        yield current
        finished = True
    finally:
        _turn.reset(token)
        running = [task for task in current.work if not task.done()]
        if running and not finished:
            logger.info("A2A turn cut short: stopping %d task(s) of its work", len(running))
            for task in running:
                task.cancel()
            try:
                await asyncio.wait(running, timeout=STOP_SECONDS)
            except asyncio.CancelledError:  # cancelled again while waiting: they are cancelled
                pass

"""One A2A turn's lifetime: the priced :class:`~aixyz_sessions.agent.asks.Ask` it runs,
and the work it started, stopped when the request that paid for it goes away.

The SDK runs the executor in background tasks of its own (``ActiveTask``'s
producer) that outlive the request unless told otherwise. A paid request
that ends early (the client disconnected, Django cancelled the view, the
payment could not be taken) must not leave a model talking and tools running
for nobody: that work would be unpaid and, were it to finish, its result
would reach the store. So the view opens :func:`turn` around the SDK call,
the executor :func:`joins <join>` it, and a turn that does not end normally
cancels what joined.

The executor runs in a task created inside the request, which copies this
module's context variables: that is how it finds the turn and its ask.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from .asks import Ask

__all__ = ["asked", "join", "turn"]

logger = logging.getLogger("aixyz_sessions.agent")

#: How long a cancelled turn's work gets to stop before it is left to the loop.
STOP_SECONDS = 5.0

_ask: contextvars.ContextVar[Ask | None] = contextvars.ContextVar("aixyz_a2a_ask", default=None)
_work: contextvars.ContextVar[set[asyncio.Task[Any]] | None] = contextvars.ContextVar(
    "aixyz_a2a_turn", default=None
)


def asked() -> Ask | None:
    """The ask the current turn was priced for (``None`` outside :func:`turn`)."""
    return _ask.get()


def join() -> None:
    """Count the running task as the current turn's work (cancelled if the turn is cut short)."""
    work = _work.get()
    task = asyncio.current_task()
    if work is not None and task is not None:
        work.add(task)


@asynccontextmanager
async def turn(ask: Ask | None) -> AsyncIterator[None]:
    """The block that answers one paid message; its work stops if the block does not finish."""
    work: set[asyncio.Task[Any]] = set()
    ask_token = _ask.set(ask)
    work_token = _work.set(work)
    finished = False
    try:
        yield
        finished = True
    finally:
        _ask.reset(ask_token)
        _work.reset(work_token)
        running = [task for task in work if not task.done()]
        if running and not finished:
            logger.info("A2A turn cut short: stopping %d task(s) of its work", len(running))
            for task in running:
                task.cancel()
            try:
                await asyncio.wait(running, timeout=STOP_SECONDS)
            except asyncio.CancelledError:  # cancelled again while waiting: they are cancelled
                pass

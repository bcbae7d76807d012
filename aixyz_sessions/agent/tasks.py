"""A2A tasks kept where the payments' records are: Redis, the database, or process memory.

:class:`PayerTaskStore` is the ``a2a-sdk``'s ``TaskStore`` over the replay
guard's records (:meth:`~aixyz_sessions.replay.ReplayGuard.remember`): with
the Redis or database session store, tasks survive the process and every
worker sees them; with the in-memory store they live as long as the process.
Each task is kept under its owner (the payer who created it) for
:data:`TASK_TTL` seconds after its last update, as the SDK's JSON; a small
per-payer index (the :data:`MAX_TASKS` most recent ids) serves ``ListTasks``.
Another payer's task id is simply not found.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Callable

from a2a.server.context import ServerCallContext
from a2a.server.tasks import InMemoryTaskStore, TaskStore
from a2a.types import ListTasksRequest, ListTasksResponse, Task
from google.protobuf.json_format import MessageToJson, Parse, ParseError

from ..replay import ReplayGuard

__all__ = ["MAX_TASKS", "TASK_TTL", "PayerTaskStore"]

#: Seconds a task is kept after its last update.
TASK_TTL = 7 * 24 * 3600.0
#: Most recent tasks per payer that ``ListTasks`` finds.
MAX_TASKS = 100
_INDEX = "a2a-tasks"


def _name(task_id: str) -> str:
    return f"a2a-task:{task_id}"


class PayerTaskStore(TaskStore):
    """Tasks per owner in the replay guard's backend (see the module)."""

    def __init__(
        self,
        guard: Callable[[], ReplayGuard],
        owner: Callable[[ServerCallContext], str],
        *,
        ttl: float = TASK_TTL,
    ) -> None:
        self._guard = guard
        self._owner = owner
        self.ttl = ttl

    def _who(self, context: ServerCallContext) -> str | None:
        owner = self._owner(context)
        return owner or None

    async def save(self, task: Task, context: ServerCallContext) -> None:
        owner = self._who(context)
        if owner is None:
            raise PermissionError("a task needs a payer (its owner)")
        guard = self._guard()
        until = time.time() + self.ttl
        await guard.remember(owner, _name(task.id), MessageToJson(task), until)
        ids = await self._index(guard, owner)
        if task.id not in ids:
            ids = [*ids, task.id][-MAX_TASKS:]
        await guard.remember(owner, _INDEX, json.dumps(ids), until)

    async def get(self, task_id: str, context: ServerCallContext) -> Task | None:
        owner = self._who(context)
        if owner is None or not 0 < len(task_id) <= 200:
            return None
        return await self._task(self._guard(), owner, task_id)

    async def list(self, params: ListTasksRequest, context: ServerCallContext) -> ListTasksResponse:
        """The owner's tasks, filtered, ordered and paged as the SDK's in-memory store does."""
        owner = self._who(context) or ""
        scratch = InMemoryTaskStore(owner_resolver=lambda _context: owner)
        if owner:
            guard = self._guard()
            for task_id in await self._index(guard, owner):
                task = await self._task(guard, owner, task_id)
                if task is not None:
                    await scratch.save(task, context)
        return await scratch.list(params, context)

    async def delete(self, task_id: str, context: ServerCallContext) -> None:
        owner = self._who(context)
        if owner is None or not 0 < len(task_id) <= 200:
            return
        guard = self._guard()
        await guard.release(owner, _name(task_id))
        ids = [i for i in await self._index(guard, owner) if i != task_id]
        await guard.remember(owner, _INDEX, json.dumps(ids), time.time() + self.ttl)

    @staticmethod
    async def _task(guard: ReplayGuard, owner: str, task_id: str) -> Task | None:
        value = await guard.recall(owner, _name(task_id))
        if not value or not value.startswith("{"):
            return None
        try:
            task: Task = Parse(value, Task(), ignore_unknown_fields=True)
        except ParseError:  # pragma: no cover - we wrote it
            return None
        return task

    @staticmethod
    async def _index(guard: ReplayGuard, owner: str) -> builtins.list[str]:
        value = await guard.recall(owner, _INDEX)
        try:
            ids = json.loads(value) if value else []
        except ValueError:  # pragma: no cover - we wrote it
            return []
        return [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []

"""A2A tasks kept where the payments' records are: Redis, the database, or process memory.

:class:`PayerTaskStore` is the ``a2a-sdk``'s ``TaskStore`` over the replay
guard's records (:meth:`~aixyz_sessions.replay.PayerRecords.remember`): with
the Redis or database session store, tasks survive the process and every
worker sees them; with the in-memory store they live as long as the process.
Each task is kept under its owner (the payer who created it) for
:data:`TASK_TTL` seconds after its last update; another payer's task id is
simply not found.

What a payment buys, for tasks:

* a task is written only once the turn that made it is paid for: inside a
  paid call the writes wait in the call's
  :class:`~aixyz_sessions.staging.StagedSession` (read back from there by the
  same call) and reach the store at its commit, after settlement; a turn that
  fails, is aborted or cannot settle leaves no task behind;
* one task is at most :data:`MAX_TASK_BYTES` as stored: a larger one is kept
  without its message history, then without its artifacts' contents (they
  were delivered in the answer), so one payment cannot buy unbounded storage;
* a payer's index holds the :data:`MAX_TASKS` most recent tasks, each with the
  few fields ``ListTasks`` filters and orders on, so a listing reads only the
  tasks of its page (at most :data:`MAX_PAGE`); a task that falls out of the
  index is deleted.

Tasks are stored as the SDK's protobuf bytes (base64), which parse in
microseconds, not as JSON; records written as JSON by an earlier version are
still read.
"""

from __future__ import annotations

import base64
import builtins
import json
import time
from collections.abc import Callable
from typing import Any

from a2a.server.context import ServerCallContext
from a2a.server.tasks import TaskStore
from a2a.types import ListTasksRequest, ListTasksResponse, Task
from a2a.utils.constants import DEFAULT_LIST_TASKS_PAGE_SIZE
from a2a.utils.errors import InvalidParamsError
from a2a.utils.task import ListTasksCursor, decode_list_tasks_cursor, encode_list_tasks_cursor
from google.protobuf.json_format import Parse, ParseError
from google.protobuf.message import DecodeError

from ..context import get_session
from ..replay import PayerRecords
from ..staging import StagedSession

__all__ = ["MAX_PAGE", "MAX_TASKS", "MAX_TASK_BYTES", "TASK_TTL", "PayerTaskStore"]

#: Seconds a task is kept after its last update.
TASK_TTL = 7 * 24 * 3600.0
#: Most recent tasks per payer that ``ListTasks`` finds (older ones are deleted).
MAX_TASKS = 100
#: Largest task kept, in bytes of its protobuf encoding.
MAX_TASK_BYTES = 256 * 1024
#: Most tasks one ``ListTasks`` answer holds (a larger page size gets this many and a token).
MAX_PAGE = 20
#: Longest page token read (ours are about 100 characters; the SDK parses them as JSON).
MAX_PAGE_TOKEN_CHARS = 512
_INDEX = "a2a-tasks"
_BINARY = "pb:"

#: One index entry: ``[task id, context id, state, status timestamp in ns or None]``.
Summary = list[Any]


def _name(task_id: str) -> str:
    return f"a2a-task:{task_id}"


def bounded(task: Task) -> Task:
    """``task`` as kept: at most :data:`MAX_TASK_BYTES` (see the module)."""
    if task.ByteSize() <= MAX_TASK_BYTES:
        return task
    kept = Task()
    kept.CopyFrom(task)
    kept.ClearField("history")
    for artifact in kept.artifacts:
        if kept.ByteSize() <= MAX_TASK_BYTES:
            break
        size = artifact.ByteSize()
        del artifact.parts[:]
        note = artifact.parts.add()
        note.text = f"(this artifact was {size} bytes: too large to keep; it was in the answer)"
    if kept.ByteSize() > MAX_TASK_BYTES:
        kept.status.ClearField("message")
        kept.ClearField("metadata")
    if kept.ByteSize() > MAX_TASK_BYTES:  # ids no message should carry: the bare outcome
        bare = Task(id=kept.id[:256], context_id=kept.context_id[:256])
        bare.status.state = kept.status.state
        bare.status.timestamp.CopyFrom(kept.status.timestamp)
        kept = bare
    return kept


def _summary(task: Task) -> Summary:
    stamp = task.status.timestamp.ToNanoseconds() if task.status.HasField("timestamp") else None
    return [task.id, task.context_id, int(task.status.state), stamp]


def _sort_key(summary: Summary) -> tuple[bool, int, str]:
    """The SDK's ``ListTasks`` order: ``(has timestamp, timestamp, id)``, descending."""
    return (summary[3] is not None, summary[3] or 0, summary[0])


class PayerTaskStore(TaskStore):
    """Tasks per owner in the replay guard's backend (see the module)."""

    def __init__(
        self,
        guard: Callable[[], PayerRecords],
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
        """Keep ``task``; inside a paid call, only once its payment has settled."""
        owner = self._who(context)
        if owner is None:
            raise PermissionError("a task needs a payer (its owner)")
        kept = bounded(task)
        if kept is task:
            kept = Task()
            kept.CopyFrom(task)  # the SDK goes on changing its own copy
        session = get_session()
        if isinstance(session, StagedSession) and session.defer(
            _name(task.id), kept, lambda: self._write(owner, kept)
        ):
            return
        await self._write(owner, kept)

    async def _write(self, owner: str, task: Task) -> None:
        guard = self._guard()
        until = time.time() + self.ttl
        record = _BINARY + base64.b64encode(task.SerializeToString()).decode("ascii")
        await guard.remember(owner, _name(task.id), record, until)
        index = [entry for entry in await self._index(guard, owner) if entry[0] != task.id]
        index.append(_summary(task))
        dropped, index = index[:-MAX_TASKS], index[-MAX_TASKS:]
        await guard.remember(owner, _INDEX, json.dumps(index), until)
        for entry in dropped:
            await guard.forget(owner, _name(entry[0]))

    async def get(self, task_id: str, context: ServerCallContext) -> Task | None:
        owner = self._who(context)
        if owner is None or not 0 < len(task_id) <= 200:
            return None
        session = get_session()
        if isinstance(session, StagedSession):  # this call's own task, not yet paid for
            staged = session.deferred(_name(task_id))
            if isinstance(staged, Task):
                copy = Task()
                copy.CopyFrom(staged)
                return copy
        return await self._task(self._guard(), owner, task_id)

    async def list(self, params: ListTasksRequest, context: ServerCallContext) -> ListTasksResponse:
        """The owner's tasks, filtered, ordered and paged as the SDK's own stores do.

        Filters and order come from the index; only the page's tasks are read.
        """
        owner = self._who(context)
        guard = self._guard()
        entries = await self._index(guard, owner) if owner else []
        if params.context_id:
            entries = [e for e in entries if e[1] == params.context_id]
        if params.status:
            entries = [e for e in entries if e[2] == params.status]
        if params.HasField("status_timestamp_after"):
            after_ns = params.status_timestamp_after.ToNanoseconds()
            entries = [e for e in entries if e[3] is not None and e[3] >= after_ns]
        entries.sort(key=_sort_key, reverse=True)
        start = 0
        if params.page_token:
            if len(params.page_token) > MAX_PAGE_TOKEN_CHARS:  # before the SDK parses its JSON
                raise InvalidParamsError(message="invalid page token")
            cursor = decode_list_tasks_cursor(params.page_token)
            if cursor is None:
                raise InvalidParamsError(message="invalid page token")
            after = cursor.sort_key()
            start = next((i for i, e in enumerate(entries) if _sort_key(e) < after), len(entries))
        size = min(params.page_size or DEFAULT_LIST_TASKS_PAGE_SIZE, MAX_PAGE)
        page = entries[start : start + size]
        tasks = []
        for entry in page:
            task = await self._task(guard, owner or "", entry[0])
            if task is not None:
                tasks.append(task)
        next_token = ""
        if start + size < len(entries) and page:
            last = page[-1]
            next_token = encode_list_tasks_cursor(
                ListTasksCursor(timestamp_ns=last[3], task_id=last[0])
            )
        return ListTasksResponse(
            tasks=tasks, next_page_token=next_token, page_size=size, total_size=len(entries)
        )

    async def delete(self, task_id: str, context: ServerCallContext) -> None:
        owner = self._who(context)
        if owner is None or not 0 < len(task_id) <= 200:
            return
        guard = self._guard()
        await guard.forget(owner, _name(task_id))
        index = [e for e in await self._index(guard, owner) if e[0] != task_id]
        await guard.remember(owner, _INDEX, json.dumps(index), time.time() + self.ttl)

    @staticmethod
    async def _task(guard: PayerRecords, owner: str, task_id: str) -> Task | None:
        value = await guard.recall(owner, _name(task_id))
        if not value:
            return None
        task = Task()
        try:
            if value.startswith(_BINARY):
                task.ParseFromString(base64.b64decode(value[len(_BINARY) :]))
            elif value.startswith("{"):  # written as JSON by an earlier version
                Parse(value, task, ignore_unknown_fields=True)
            else:
                return None
        except (DecodeError, ParseError, ValueError):  # pragma: no cover - we wrote it
            return None
        return task

    async def _index(self, guard: PayerRecords, owner: str) -> builtins.list[Summary]:
        value = await guard.recall(owner, _INDEX)
        try:
            stored = json.loads(value) if value else []
        except ValueError:  # pragma: no cover - we wrote it
            return []
        entries: builtins.list[Summary] = []
        for entry in stored if isinstance(stored, builtins.list) else []:
            if isinstance(entry, str):  # an earlier version kept ids only
                task = await self._task(guard, owner, entry)
                if task is not None:
                    entries.append(_summary(task))
            elif isinstance(entry, builtins.list) and len(entry) == 4:
                entries.append(entry)
        return entries

"""A2A push notifications: the payer's webhooks for their tasks, sent only for paid work.

:class:`PayerPushConfigStore` keeps a task's push configurations (A2A
``TaskPushNotificationConfig``: a URL, a token, credentials) where the tasks
are kept (the replay guard's records: Redis, the database, or process memory),
under the payer who owns the task, so another payer's ``get``/``list``/
``delete`` finds nothing (the SDK's handler also checks the task is the
caller's). :class:`PaidPushSender` is the SDK's sender with two rules:

* every URL is screened by the SDK's ``validate_push_notification_url`` when it
  is set and again when it is called (no loopback, private, link-local,
  shared or metadata addresses; the host's resolution is checked each time,
  so a name that later points inside is refused then);
* what a paid turn produces is pushed only once its payment has settled: a
  notification sent inside a paid call waits in the call's staged session
  and goes out after the commit, in the background; a turn that fails, is
  aborted or does not settle pushes nothing (no artifact leaves unpaid).

Limits: :data:`MAX_CONFIGS` per task, URLs of at most :data:`MAX_URL_CHARS`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from a2a.server.context import ServerCallContext
from a2a.server.tasks import BasePushNotificationSender, PushNotificationConfigStore
from a2a.types import TaskPushNotificationConfig
from a2a.utils.errors import InvalidParamsError
from a2a.utils.push_url_validator import validate_push_notification_url

from ..context import get_session
from ..replay import PayerRecords
from ..staging import StagedSession

__all__ = [
    "MAX_CONFIGS",
    "MAX_URL_CHARS",
    "PaidPushSender",
    "PayerPushConfigStore",
    "validate_push_notification_url",
]

logger = logging.getLogger("aixyz_sessions.agent")

#: Most webhooks one task notifies.
MAX_CONFIGS = 4
#: Longest webhook URL taken.
MAX_URL_CHARS = 2048
#: Where the dispatch path finds a task's webhooks (no payer is bound when it sends).
DISPATCH_OWNER = "a2a-push-dispatch"
#: Seconds a task's webhooks are kept after they were set (as long as tasks are).
PUSH_TTL = 7 * 24 * 3600.0


def _key(task_id: str) -> str:
    return f"a2a-push:{task_id}"


def _dump(configs: list[TaskPushNotificationConfig]) -> str:
    return json.dumps(
        [base64.b64encode(config.SerializeToString()).decode("ascii") for config in configs]
    )


def _load(value: str | None) -> list[TaskPushNotificationConfig]:
    if not value:
        return []
    configs = []
    for item in json.loads(value):
        config = TaskPushNotificationConfig()
        config.ParseFromString(base64.b64decode(item))
        configs.append(config)
    return configs


class PayerPushConfigStore(PushNotificationConfigStore):
    """Push configurations per task, under the task's payer (see the module)."""

    def __init__(
        self,
        guard: Callable[[], PayerRecords],
        owner: Callable[[ServerCallContext], str],
        *,
        ttl: float = PUSH_TTL,
    ) -> None:
        self._guard = guard
        self._owner = owner
        self.ttl = ttl

    def _who(self, context: ServerCallContext) -> str:
        owner = self._owner(context)
        if not owner:
            raise PermissionError("a push configuration needs a payer (its owner)")
        return owner

    async def set_info(
        self,
        task_id: str,
        notification_config: TaskPushNotificationConfig,
        context: ServerCallContext,
    ) -> TaskPushNotificationConfig:
        owner = self._who(context)
        if len(notification_config.url) > MAX_URL_CHARS:
            raise InvalidParamsError(message=f"a push URL is at most {MAX_URL_CHARS} characters")
        stored = TaskPushNotificationConfig()
        stored.CopyFrom(notification_config)
        stored.task_id = task_id
        stored.id = stored.id or task_id
        configs = [c for c in await self._read(owner, task_id) if c.id != stored.id]
        if len(configs) >= MAX_CONFIGS:
            raise InvalidParamsError(message=f"a task notifies at most {MAX_CONFIGS} webhooks")
        configs.append(stored)
        await self._write(owner, task_id, configs)
        result = TaskPushNotificationConfig()
        result.CopyFrom(stored)
        return result

    async def get_info(
        self, task_id: str, context: ServerCallContext
    ) -> list[TaskPushNotificationConfig]:
        return await self._read(self._who(context), task_id)

    async def get_info_for_dispatch(self, task_id: str) -> list[TaskPushNotificationConfig]:
        return _load(await self._guard().recall(DISPATCH_OWNER, _key(task_id)))

    async def delete_info(
        self, task_id: str, context: ServerCallContext, config_id: str | None = None
    ) -> None:
        owner = self._who(context)
        configs = await self._read(owner, task_id)
        kept = [] if config_id is None else [c for c in configs if c.id != config_id]
        await self._write(owner, task_id, kept)

    async def _read(self, owner: str, task_id: str) -> list[TaskPushNotificationConfig]:
        session = get_session()
        if isinstance(session, StagedSession):
            staged = session.deferred(_key(task_id))
            if isinstance(staged, list):
                return list(staged)
        return _load(await self._guard().recall(owner, _key(task_id)))

    async def _write(
        self, owner: str, task_id: str, configs: list[TaskPushNotificationConfig]
    ) -> None:
        """Keep ``configs``; inside a paid call, only once its payment has settled."""

        async def apply() -> None:
            guard = self._guard()
            value, until = _dump(configs), time.time() + self.ttl
            if configs:
                await guard.remember(owner, _key(task_id), value, until)
                await guard.remember(DISPATCH_OWNER, _key(task_id), value, until)
            else:
                await guard.forget(owner, _key(task_id))
                await guard.forget(DISPATCH_OWNER, _key(task_id))

        session = get_session()
        if isinstance(session, StagedSession) and session.defer(
            _key(task_id), list(configs), apply
        ):
            return
        await apply()


class PaidPushSender(BasePushNotificationSender):
    """The SDK's sender, screening every URL, holding paid work's notifications until
    its payment settled (see the module)."""

    def __init__(self, client: Any, store: PushNotificationConfigStore) -> None:
        super().__init__(client, store, push_url_validator=validate_push_notification_url)
        self._sending: set[asyncio.Task[None]] = set()

    async def send_notification(self, task_id: str, event: Any) -> None:
        session = get_session()
        if isinstance(session, StagedSession):
            # Inside a paid call: after the commit (settled), or never (discarded).
            name = f"a2a-push-event:{uuid.uuid4().hex}"
            if session.defer(name, event, lambda: self._in_background(task_id, event)):
                return
        await super().send_notification(task_id, event)

    async def _in_background(self, task_id: str, event: Any) -> None:
        """Send after the commit without holding up the paid answer."""
        task = asyncio.create_task(super().send_notification(task_id, event))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

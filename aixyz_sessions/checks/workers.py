"""Say where it bites: in-memory sessions and replay claims belong to one process.

Under several worker processes each one keeps its own in-memory store and
its own replay guard, so a payer's data is split between workers (a read
lands on a worker that never saw the write) and one signed payment can be
accepted once per worker. Nothing fails loudly; data just goes missing. So:

* when the server runs more than one worker process and it can tell
  (``WEB_CONCURRENCY``, or the parent server's ``--workers``/``-w`` option),
  either in memory is an error, ``aixyz_sessions.E013``, whatever ``DEBUG``
  is: the ASGI application refuses to start (the check runs at start).
  ``AIXYZ_ALLOW_IN_MEMORY_WORKERS = True`` lets it start anyway, for those
  who know (sticky sessions, a per-worker cache on purpose), with one log
  line per worker;
* ``manage.py check`` warns (``aixyz_sessions.W010`` for the store,
  ``aixyz_sessions.W103`` for the replay guard) when either is in memory and
  ``DEBUG`` is off (a deployment, where several workers are the norm).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core import checks

__all__ = [
    "ALLOW_SETTING",
    "check_several_workers",
    "check_single_process_parts",
    "in_memory_parts",
    "warn_if_several_workers",
    "worker_count",
]

logger = logging.getLogger("aixyz_sessions")

#: ``True``: start with in-memory parts under several workers anyway (see the module).
ALLOW_SETTING = "AIXYZ_ALLOW_IN_MEMORY_WORKERS"

_HINT = (
    "Use CacheSessionStore (Redis) or DatabaseSessionStore when the server runs more than "
    "one worker process: the replay guard then lives there too."
)


def in_memory_parts() -> list[str]:
    """Which of the session store and the replay guard live in this process's memory."""
    from ..conf import get_store
    from ..replay import InMemoryReplayGuard
    from ..stores.memory import InMemorySessionStore
    from .startup import configured_replay_guard

    parts = []
    if isinstance(get_store(), InMemorySessionStore):
        parts.append("session store")
    if isinstance(configured_replay_guard(), InMemoryReplayGuard):
        parts.append("replay guard")
    return parts


@checks.register("aixyz_sessions")
def check_single_process_parts(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W010/W103: an in-memory store or replay guard with ``DEBUG = False``."""
    if settings.DEBUG:
        return []
    try:
        parts = in_memory_parts()
    except Exception:  # a store that cannot be built is reported by its own check
        return []
    messages: list[checks.CheckMessage] = []
    if "session store" in parts:
        messages.append(
            checks.Warning(
                "the in-memory session store keeps sessions in one process: under several "
                "worker processes a payer's data is split between them, and a restart loses it",
                hint=_HINT,
                id="aixyz_sessions.W010",
            )
        )
    if "replay guard" in parts:
        messages.append(
            checks.Warning(
                "the in-memory replay guard covers one process: under several worker "
                "processes one signed payment can be accepted once per worker",
                hint=_HINT + ' Or set AIXYZ_X402["REPLAY_GUARD"] to a shared ReplayGuard.',
                id="aixyz_sessions.W103",
            )
        )
    return messages


@checks.register("aixyz_sessions")
def check_several_workers(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E013: several worker processes with an in-memory store or replay guard."""
    if getattr(settings, ALLOW_SETTING, False):
        return []
    workers = worker_count()
    if workers is None or workers <= 1:
        return []
    try:
        parts = in_memory_parts()
    except Exception:  # a store that cannot be built is reported by its own check
        return []
    if not parts:
        return []
    return [
        checks.Error(
            f"{workers} worker processes with the in-memory {' and '.join(parts)}: each worker "
            "has its own, so a payer's reads miss their writes and one payment can be "
            "accepted once per worker",
            hint=_HINT + f" Or run one worker; or set {ALLOW_SETTING} = True to start anyway.",
            id="aixyz_sessions.E013",
        )
    ]


def _workers_option(argv: list[str]) -> int | None:
    for index, arg in enumerate(argv):
        for flag in ("--workers", "-w"):
            if arg == flag and index + 1 < len(argv):
                value = argv[index + 1]
            elif arg.startswith(flag + "=") and flag.startswith("--"):
                value = arg.split("=", 1)[1]
            else:
                continue
            return int(value) if value.isdigit() else None
    return None


def worker_count() -> int | None:
    """How many worker processes the server runs, when this process can tell.

    ``WEB_CONCURRENCY`` (read by uvicorn and gunicorn), else ``--workers N``
    or ``-w N`` on this process's or its parent's command line (Linux
    ``/proc``). ``None`` when nothing says.
    """
    concurrency = os.environ.get("WEB_CONCURRENCY", "").strip()
    if concurrency.isdigit():
        return int(concurrency)
    for pid in (os.getpid(), os.getppid()):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        count = _workers_option([part.decode(errors="replace") for part in raw.split(b"\0")])
        if count is not None:
            return count
    return None


def warn_if_several_workers() -> None:
    """One warning line at start when in-memory parts meet several worker processes.

    Reached only when :data:`ALLOW_SETTING` let the server start (E013 otherwise).
    """
    workers = worker_count()
    if workers is None or workers <= 1:
        return
    parts = in_memory_parts()
    if parts:
        logger.warning(
            "aixyz_sessions: %d worker processes with the in-memory %s: each worker has its "
            "own, so sessions split and a payment can be accepted once per worker. %s",
            workers,
            " and ".join(parts),
            _HINT,
        )

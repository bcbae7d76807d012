"""What the housekeeping commands share: the configured store, run to completion.

Commands are synchronous; each runs its coroutine in a fresh event loop and
turns store errors into ``CommandError`` so the user sees one clear line,
not a traceback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from django.core.management.base import BaseCommand, CommandError

from ..conf import StoreConfigError, get_store
from ..exceptions import SessionStoreError
from ..stores.base import SessionStore
from ..stores.memory import InMemorySessionStore

T = TypeVar("T")


class StoreCommand(BaseCommand):
    """A command that acts on the configured session store."""

    def store(self) -> SessionStore:
        try:
            store = get_store()
        except StoreConfigError as exc:
            raise CommandError(f"{exc.msg}\nHint: {exc.hint}") from exc
        if isinstance(store, InMemorySessionStore):
            self.stderr.write(
                "Note: the configured store is InMemorySessionStore, which lives inside each "
                "server process; this command only sees its own, empty, copy."
            )
        return store

    def run(self, work: Callable[[SessionStore], Coroutine[Any, Any, T]]) -> T:
        store = self.store()
        try:
            return asyncio.run(work(store))
        except NotImplementedError as exc:
            raise CommandError(f"{type(store).__name__} cannot do this: {exc}") from exc
        except SessionStoreError as exc:
            raise CommandError(str(exc)) from exc
        except (TypeError, ValueError) as exc:
            raise CommandError(str(exc)) from exc


def payer_key(payer: str) -> str:
    """The id a store files a payer under (what ``Session`` passes: lower case)."""
    if not payer.strip():
        raise CommandError("payer must not be empty")
    return payer.strip().lower()

"""``manage.py aixyz_sessions_purge``: delete expired session entries now."""

from __future__ import annotations

from typing import Any

from ...stores.base import SessionStore
from ..base import StoreCommand


class Command(StoreCommand):
    help = "Delete expired session entries of the configured store and report how many."

    def handle(self, *args: Any, **options: Any) -> None:
        async def purge(store: SessionStore) -> int:
            return await store.purge_expired()

        count = self.run(purge)
        self.stdout.write(self.style.SUCCESS(f"Purged {count} expired session entries."))

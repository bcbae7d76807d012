"""``manage.py aixyz_sessions_erase <payer>``: delete everything one payer stored."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from ...stores.base import SessionStore
from ..base import StoreCommand, payer_key


class Command(StoreCommand):
    help = "Delete every session entry of one payer (e.g. on an erasure request)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("payer", help="payer address (any case)")

    def handle(self, *args: Any, **options: Any) -> None:
        payer = payer_key(options["payer"])

        async def erase(store: SessionStore) -> int:
            # List-and-delete from the start until nothing is left: works on every
            # store that can list, and keys written meanwhile are caught too.
            removed = 0
            while True:
                page = await store.list(payer, limit=store.max_batch, keys_only=True)
                if not page.entries:
                    return removed
                removed += await store.delete_many(payer, list(page.entries))

        count = self.run(erase)
        self.stdout.write(self.style.SUCCESS(f"Erased {count} session entries of {payer}."))

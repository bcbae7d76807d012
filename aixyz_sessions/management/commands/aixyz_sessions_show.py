"""``manage.py aixyz_sessions_show <payer>``: one payer's live keys and values."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from ...stores.base import SessionStore
from ..base import StoreCommand, payer_key


class Command(StoreCommand):
    help = "List one payer's live session keys and values (ascending key order)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("payer", help="payer address (any case)")
        parser.add_argument("--prefix", default=None, help="only keys starting with this")
        parser.add_argument("--keys-only", action="store_true", help="print keys, not values")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        payer = payer_key(options["payer"])
        prefix, keys_only = options["prefix"], options["keys_only"]

        async def collect(store: SessionStore) -> dict[str, str]:
            entries: dict[str, str] = {}
            cursor = None
            while True:
                page = await store.list(
                    payer, prefix=prefix, cursor=cursor, limit=500, keys_only=keys_only
                )
                entries.update(page.entries)
                cursor = page.cursor
                if cursor is None:
                    return entries

        entries = self.run(collect)
        if options["json"]:
            shown: object = list(entries) if keys_only else entries
            self.stdout.write(json.dumps({"payer": payer, "entries": shown}, ensure_ascii=False))
            return
        if not entries:
            self.stdout.write(f"No live entries for {payer}.")
            return
        for key, value in entries.items():
            self.stdout.write(key if keys_only else f"{key} = {value}")
        self.stdout.write(f"{len(entries)} entries for {payer}.")

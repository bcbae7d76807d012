"""``manage.py aixyz_sessions_show [<payer>]``: one payer's live entries, or the payers.

With a payer: that payer's live keys and values, all of them. Without one:
the payers that have live entries, one page at a time (``--limit``, default
100), with the ``--cursor`` to pass for the next page when more remain. The
payer list needs a store that implements ``list_payers`` (every built-in
store does).
"""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import CommandError

from ...stores.base import PayerPage, SessionStore
from ..base import StoreCommand, payer_key

#: Payers shown per page when ``--limit`` is not given.
DEFAULT_PAYER_LIMIT = 100


class Command(StoreCommand):
    help = (
        "List one payer's live session keys and values (ascending key order); without a "
        "payer, list the payers that have live entries, a page at a time."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "payer", nargs="?", default=None, help="payer address (any case); omit to list payers"
        )
        parser.add_argument(
            "--prefix",
            default=None,
            help="only keys starting with this; without a payer, only payers starting with it",
        )
        parser.add_argument("--keys-only", action="store_true", help="print keys, not values")
        parser.add_argument(
            "--limit",
            type=int,
            default=None,
            help=f"payers per page, without a payer (default {DEFAULT_PAYER_LIMIT}; 0: all)",
        )
        parser.add_argument(
            "--cursor", default=None, help="continue the payer list where a previous page ended"
        )
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["payer"] is None:
            self.show_payers(options)
            return
        if options["limit"] is not None or options["cursor"] is not None:
            raise CommandError(
                "--limit and --cursor page the list of payers: leave out the payer to list "
                "payers, or drop them to show all of one payer's entries"
            )
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

    def show_payers(self, options: dict[str, Any]) -> None:
        """One page of the payers with live entries, and how to ask for the next."""
        if options["keys_only"]:
            raise CommandError("--keys-only shows one payer's keys: pass the payer")
        limit = DEFAULT_PAYER_LIMIT if options["limit"] is None else options["limit"]
        # Payers are filed lower-case (as Session passes them): so is the prefix matched.
        prefix = options["prefix"].lower() if options["prefix"] else None
        cursor = options["cursor"]

        async def page_of_payers(store: SessionStore) -> PayerPage:
            if not store.supports_list_payers:
                raise CommandError(
                    f"{type(store).__name__} cannot list payers (it does not implement the "
                    "optional list_payers); pass a payer to show that payer's entries"
                )
            return await store.list_payers(prefix=prefix, cursor=cursor, limit=limit)

        page = self.run(page_of_payers)
        if options["json"]:
            shown = {"payers": page.payers, "cursor": page.cursor}
            self.stdout.write(json.dumps(shown, ensure_ascii=False))
            return
        if not page.payers:
            where = f" starting with {prefix!r}" if prefix else ""
            after = " after the cursor" if cursor else ""
            self.stdout.write(f"No payers{where} with live entries{after}.")
            return
        for payer in page.payers:
            self.stdout.write(payer)
        count = f"{len(page.payers)} payer{'' if len(page.payers) == 1 else 's'}"
        if page.cursor is None:
            self.stdout.write(f"{count}.")
        else:
            self.stdout.write(
                f"{count}; more remain: pass --cursor {page.cursor} for the next page"
            )

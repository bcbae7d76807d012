"""``manage.py aixyz_channels``: claim, settle and refund payment channels (or ``--watch``)."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...exceptions import SessionStoreError


class Command(BaseCommand):
    help = (
        "Claim the vouchers of idle payment channels (x402 batch-settlement), settle what "
        "was claimed and refund channels idle for REFUND_AFTER; one line per batch. "
        "--watch keeps doing it on the SDK's timers until stopped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--all",
            action="store_true",
            help="Claim every charged voucher now, not only those idle for CLAIM_AFTER.",
        )
        parser.add_argument(
            "--no-refund", action="store_true", help="Claim and settle, but refund nothing."
        )
        parser.add_argument(
            "--watch",
            action="store_true",
            help="Run until interrupted (SIGINT/SIGTERM), then claim and settle what is left.",
        )
        parser.add_argument(
            "--for",
            dest="duration",
            type=float,
            default=None,
            help="With --watch: stop after this many seconds.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from ...payments.conf import X402ConfigError
        from ...payments.runtime import get_runtime

        try:
            runtime = get_runtime()
        except X402ConfigError as exc:
            raise CommandError(f"{exc.id}: {exc.msg}") from exc
        scheme, settings = runtime.channel_scheme, runtime.config.batch_settlement
        if scheme is None or settings is None:
            raise CommandError(
                "payment channels are off: set AIXYZ_X402['BATCH_SETTLEMENT'] ({} for defaults)"
            )

        def say(line: str) -> None:
            style = self.style.ERROR if line.startswith("FAILED") else self.style.SUCCESS
            self.stdout.write(style(line))

        storage = scheme.channel_storage
        try:
            self._run(storage, settings, options, say)
        except SessionStoreError as exc:
            raise CommandError(
                f"the channel storage cannot answer: {exc} (is it reachable, and is the "
                "database migrated: python manage.py migrate?)"
            ) from exc

    def _run(self, storage: Any, settings: Any, options: dict[str, Any], say: Any) -> None:
        from ...channels.operations import run_pass, watch

        if options["watch"]:
            stop = threading.Event()
            if threading.current_thread() is threading.main_thread():
                for sig in (signal.SIGINT, signal.SIGTERM):
                    signal.signal(sig, lambda *_: stop.set())
            if options["duration"] is not None:
                threading.Timer(options["duration"], stop.set).start()
            rescan = min(60.0, float(max(1, settings.claim_after)))
            watch(storage, settings, stop=stop, rescan=rescan, say=say)
            return
        done = run_pass(
            storage, settings, everything=options["all"], refund=not options["no_refund"], say=say
        )
        if not (done.claims or done.refunds or done.failures):
            self.stdout.write("Nothing to claim, settle or refund.")
        if done.waiting:
            self.stdout.write(
                f"{done.waiting} channel(s) have charged vouchers idle less than CLAIM_AFTER "
                f"({settings.claim_after} s): they are claimed later, or now with --all."
            )
        if done.failures:
            raise CommandError(f"{len(done.failures)} group(s) failed: {'; '.join(done.failures)}")

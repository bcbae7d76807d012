"""``manage.py aixyz_local_facilitator``: the LocalFacilitator over HTTP, for dev and tests."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ...payments.local_server import ALLOW_REMOTE_FLAG, check_bind_host


class Command(BaseCommand):
    help = (
        "Serve the in-process LocalFacilitator over the x402 facilitator HTTP API "
        "(/verify, /settle, /supported). Development only: NO MONEY MOVES."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--host", default="127.0.0.1", help="address to bind (loopback unless told otherwise)"
        )
        parser.add_argument("--port", type=int, default=4020, help="port to listen on")
        parser.add_argument(
            ALLOW_REMOTE_FLAG,
            action="store_true",
            dest="allow_remote",
            help="also listen beyond loopback (it is unauthenticated: never in production)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            import uvicorn
        except ImportError as exc:  # pragma: no cover - uvicorn is in the dev extra
            raise CommandError("uvicorn is needed: pip install uvicorn") from exc
        from ...payments.local_server import app

        host, port = options["host"], options["port"]
        problem = check_bind_host(host, allow_remote=options["allow_remote"])
        if problem is not None:
            raise CommandError(problem)
        self.stdout.write(f"LocalFacilitator on http://{host}:{port} (no money moves)")
        uvicorn.run(app, host=host, port=port, log_level="warning")

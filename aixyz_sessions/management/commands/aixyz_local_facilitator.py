"""``manage.py aixyz_local_facilitator``: the LocalFacilitator over HTTP, for dev and tests."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Serve the in-process LocalFacilitator over the x402 facilitator HTTP API "
        "(/verify, /settle, /supported). Development only: NO MONEY MOVES."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback)")
        parser.add_argument("--port", type=int, default=4020, help="port to listen on")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            import uvicorn
        except ImportError as exc:  # pragma: no cover - uvicorn is in the dev extra
            raise CommandError("uvicorn is needed: pip install uvicorn") from exc
        from ...payments.local_server import app

        host, port = options["host"], options["port"]
        self.stdout.write(f"LocalFacilitator on http://{host}:{port} (no money moves)")
        uvicorn.run(app, host=host, port=port, log_level="warning")

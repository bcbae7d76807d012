"""``python manage.py demo_setup``: the demo's local admin user, created once; what to try.

The user is ``$AIXYZ_DEMO_ADMIN_USER`` (default ``admin``) with the password
``$AIXYZ_DEMO_ADMIN_PASSWORD``, or a random one generated and printed on the
run that creates the user (only then: it is not stored anywhere in clear).
An existing user is left alone, except that a password given in the
environment is applied to it, so the environment can always log you in.
With ``--url`` (what ``make demo`` passes) it then prints what to try once
the server is up.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

USER_VARIABLE = "AIXYZ_DEMO_ADMIN_USER"
PASSWORD_VARIABLE = "AIXYZ_DEMO_ADMIN_PASSWORD"
DEFAULT_USER = "admin"


def tour(url: str, username: str) -> str:
    """What to try once the demo serves ``url``."""
    ws = url.replace("http", "ws", 1)
    return f"""
The demo ("x402 sessions") is starting on {url}  (Ctrl-C stops it)

  {url}/                      what runs here, as JSON
  {url}/tools/                the tools and their prices (one on two networks, one metered)
  {url}/tools/get-content     open it in a browser: the x402 paywall page
  {url}/mcp                   the same tools over MCP
  {ws}/ws/tools/               and over WebSocket
  {url}/agent                 and as an A2A agent (card: {url}/.well-known/agent-card.json)
  {url}/admin/                the session entries (log in as {username!r})

In another terminal, make paid calls as two fresh payers and watch them stay apart:

  .venv/bin/python manage.py demo_call   # --transport ws | mcp | a2a | a2a-inband, --url {url}

Payments go through the local facilitator: signatures are really verified, NO MONEY MOVES.
"""


class Command(BaseCommand):
    help = "Create the demo's admin user if it is missing (credentials printed once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", help="print what to try on the demo served at this URL")

    def handle(self, *args: Any, **options: Any) -> None:
        self._setup(options.get("url"))
        if options.get("url"):
            username = os.environ.get(USER_VARIABLE, "").strip() or DEFAULT_USER
            self.stdout.write(tour(str(options["url"]).rstrip("/"), username))

    def _setup(self, url: str | None) -> None:
        username = os.environ.get(USER_VARIABLE, "").strip() or DEFAULT_USER
        given = os.environ.get(PASSWORD_VARIABLE) or None
        model = get_user_model()
        user = model._default_manager.filter(username=username).first()
        if user is not None:
            if given is not None and not user.check_password(given):
                user.set_password(given)
                user.save(update_fields=["password"])
                self.stdout.write(
                    f"demo admin: password of {username!r} set from ${PASSWORD_VARIABLE}"
                )
            else:
                self.stdout.write(
                    f"demo admin: user {username!r} exists (its password was printed when it "
                    f"was created; reset it with `python manage.py changepassword {username}`)"
                )
            return
        password = given or secrets.token_urlsafe(12)
        model._default_manager.create_superuser(  # type: ignore[attr-defined]
            username=username, email="", password=password
        )
        self.stdout.write(self.style.SUCCESS(f"demo admin: created user {username!r}"))
        if given is None:
            where = f"{url.rstrip('/')}/admin/" if url else "/admin/"
            self.stdout.write(
                f"\n  Admin login for {where}  (shown ONCE, write it down)\n"
                f"    user:     {username}\n"
                f"    password: {password}\n"
                f"  (set ${USER_VARIABLE} / ${PASSWORD_VARIABLE} to choose them instead)\n"
            )
        else:
            self.stdout.write(f"demo admin: password taken from ${PASSWORD_VARIABLE}")

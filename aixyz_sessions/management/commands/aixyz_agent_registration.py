"""``manage.py aixyz_agent_registration [--url https://origin]``: the ERC-8004 registration file.

Prints the file the server serves at ``/.well-known/agent-registration.json``
for the configured ``AIXYZ_AGENT`` (the same build as the view's), and checks
it against ERC-8004 ``registration-v1``: a file to pin (IPFS, say) as the
agent's on-chain URI before the server is up. The origin is ``--url``, else
``AIXYZ_X402["ORIGIN"]``; there is no request to take one from.
"""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.urls import NoReverseMatch

from ...agent.conf import SETTING, AgentConfigError, get_agent_config
from ...agent.registration import registration_problems
from ...agent.views import registration_for
from ...hosts import configured_origin


class Command(BaseCommand):
    help = (
        "Print the agent's ERC-8004 registration file (/.well-known/agent-registration.json) "
        "and check it against registration-v1; fail with the problems found."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--url",
            default=None,
            help='the public origin, e.g. https://agent.example.com (default AIXYZ_X402["ORIGIN"])',
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if getattr(settings, SETTING, None) is None:
            raise CommandError(f"{SETTING} is not set: there is no agent to register.")
        try:
            config = get_agent_config()
        except AgentConfigError as exc:
            raise CommandError(f"{exc.msg} ({exc.id}). {exc.hint}") from None
        origin = _origin(options["url"])
        try:
            data = registration_for(config, origin)
        except NoReverseMatch:
            raise CommandError(
                "aixyz_sessions.agent.urls is not routed: the file names the agent card's URL. "
                'Add path("", include("aixyz_sessions.agent.urls")) to the root URLconf.'
            ) from None
        self.stdout.write(json.dumps(data, indent=2))
        problems = registration_problems(data)
        if problems:
            raise CommandError(
                "The registration file is not valid ERC-8004 registration-v1:\n"
                + "\n".join(f"- {p}" for p in problems)
            )


def _origin(url: str | None) -> str:
    """``--url`` as ``scheme://host[:port]``, else ``ORIGIN``; a ``CommandError`` when neither."""
    if url is None:
        origin = configured_origin()
        if origin is None:
            raise CommandError(
                "Give the public origin: --url https://agent.example.com "
                '(or set AIXYZ_X402["ORIGIN"]).'
            )
        return origin
    parts = urlsplit(url)
    # Only the origin: the file's URLs are the agent's paths below it.
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/"):
        raise CommandError(f"--url must be an origin like https://agent.example.com, got {url!r}")
    return f"{parts.scheme}://{parts.netloc}"

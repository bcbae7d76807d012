"""The host's logging stays as configured after MCP sessions (the SDK must not reconfigure it).

Run in a fresh interpreter: pytest puts its own handlers on the root logger,
which would hide the bug (``logging.debug()`` only configures a root logger
that has no handler).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent(
    """
    import asyncio, logging, os, sys
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django
    from django.conf import settings
    django.setup()                      # Django's default LOGGING: console for "django"
    settings.DEBUG = True               # its console handler prints only with DEBUG
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    settings.AIXYZ_X402 = {"PAY_TO": "0x" + "ab" * 20, "NETWORK": "eip155:84532",
                           "FACILITATOR": "local"}
    assert not logging.getLogger().handlers, logging.getLogger().handlers

    from aixyz_sessions.tools.mcp import mcp_asgi_app
    from tests.mcp_helpers import ECHO, connect, register_examples
    from tests.payments_helpers import serve

    register_examples()

    async def sessions(url):
        for _ in range(3):
            async with connect(url) as session:
                await session.list_tools()
                await session.call_tool(ECHO, {"text": "hi"})

    with serve(mcp_asgi_app()) as url:
        asyncio.run(sessions(url))
    logging.getLogger("django.request").warning("MARKER-%s", "once")
    print("ROOT-HANDLERS", len(logging.getLogger().handlers))
    """
)


def test_a_django_warning_prints_once_after_mcp_sessions() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ROOT-HANDLERS 0" in done.stdout, done.stdout + done.stderr
    assert done.stderr.count("MARKER-once") == 1, done.stderr

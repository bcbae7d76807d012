"""The examples of docs/operations.md, run: the settings parse, the URLconf serves /metrics,
the tracing setup records a paid call's spans in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from aixyz_sessions.metrics.conf import parse
from tests.docs_examples import ROOT, block


def test_the_settings_example_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_TOKEN", "a-token-long-enough-for-e300")
    scope: dict[str, object] = {}
    exec(block("docs/operations.md", "# settings.py", "AIXYZ_METRICS"), scope)
    config = parse(scope["AIXYZ_METRICS"])
    assert config is not None and config.token == "a-token-long-enough-for-e300" and config.staff


def test_the_urlconf_example_routes_metrics() -> None:
    from django.urls import resolve

    scope: dict[str, object] = {}
    exec(block("docs/operations.md", "# urls.py", "aixyz_sessions.metrics.urls"), scope)
    (pattern,) = scope["urlpatterns"]  # type: ignore[misc]
    assert resolve("/metrics", urlconf=scope_module(pattern)).url_name == "metrics"


def scope_module(pattern: object) -> object:
    """A URLconf object holding ``pattern`` only."""

    class URLConf:
        urlpatterns = [pattern]

    return URLConf


def test_the_tracing_setup_example_prints_a_tools_span() -> None:
    setup = block("docs/operations.md", "from opentelemetry import trace")
    program = setup + textwrap.dedent(
        """
        import asyncio
        import django
        from django.conf import settings

        settings.configure(INSTALLED_APPS=["aixyz_sessions"])
        django.setup()
        from aixyz_sessions.tools.registry import Tool

        async def echo(text: str) -> dict:
            return {"text": text}

        print(asyncio.run(Tool(name="echo", description="", func=echo).run({"text": "hi"})))
        provider.force_flush()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert '"name": "execute_tool echo"' in done.stdout
    assert '"gen_ai.tool.name": "echo"' in done.stdout
    assert '"service.name": "agent-tools"' in done.stdout

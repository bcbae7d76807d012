"""Every code example in README.md and on the docs/ pages runs, as a user would paste it.

The blocks are found by page and opening line (``tests/docs_examples.py``); a
docs change that breaks an example (or removes one) fails here.
``tests/test_readme_walkthrough.py`` runs docs/install.md's walkthrough and
``tests/test_docs.py`` checks that no block is left unrun without a reason.
"""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.test import override_settings
from django.urls import include, path
from eth_account import Account

from aixyz_sessions import get_store
from aixyz_sessions.conf import build_store
from aixyz_sessions.payments.conf import parse_config
from aixyz_sessions.payments.runtime import reset_runtime
from aixyz_sessions.stores.base import SessionStore
from aixyz_sessions.stores.memory import InMemorySessionStore
from aixyz_sessions.tools import registry
from aixyz_sessions.tools.mcp import reset_mcp_server
from tests.docs_examples import ROOT, block
from tests.payments_helpers import LOCAL, MIDDLEWARE, serve
from tests.settings import LOOPBACK_HOSTS

pytestmark = pytest.mark.django_db


def run(code: str, **names: Any) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "readme_example", **names}
    exec(compile(code, "<docs example>", "exec"), namespace)
    return namespace


def urlconf(name: str, patterns: list[Any]) -> Iterator[str]:
    module = types.ModuleType(name)
    module.urlpatterns = patterns  # type: ignore[attr-defined]
    sys.modules[name] = module
    try:
        yield name
    finally:
        del sys.modules[name]


@contextmanager
def served(name: str, patterns: list[Any], **settings: Any) -> Iterator[str]:
    """``patterns`` behind X402Middleware (local facilitator) under uvicorn; the base URL.

    The one ASGI application (Django, /mcp, the WebSocket); ``settings`` override more.
    """
    from aixyz_sessions.asgi import get_asgi_application

    for urls in urlconf(name, patterns):
        with (
            override_settings(
                MIDDLEWARE=MIDDLEWARE,
                ROOT_URLCONF=urls,
                AIXYZ_X402=LOCAL,
                ALLOWED_HOSTS=LOOPBACK_HOSTS,
                **settings,
            ),
            serve(get_asgi_application()) as base,
        ):
            yield base


@pytest.fixture
def readme_tools() -> Iterator[dict[str, Any]]:
    before = {t.name for t in registry}
    namespace = run(block("docs/tools.md", "# myapp/tools.py"))
    try:
        yield namespace
    finally:
        for item in list(registry):
            if item.name not in before:
                registry.unregister(item.name)
        reset_mcp_server()


def test_settings_example_is_valid() -> None:
    namespace = run(block("docs/install.md", "# settings.py\n"), INSTALLED_APPS=[], MIDDLEWARE=[])
    assert namespace["INSTALLED_APPS"] == ["aixyz_sessions"]
    assert namespace["MIDDLEWARE"] == ["aixyz_sessions.payments.middleware.X402Middleware"]
    config = dict(namespace["AIXYZ_X402"], PAY_TO="0x" + "ab" * 20)
    assert parse_config(config).is_local
    assert isinstance(build_store(namespace["AIXYZ_SESSION_STORE"]), InMemorySessionStore)


@pytest.mark.parametrize(
    "example",
    [
        ("docs/stores.md", 'AIXYZ_SESSION_STORE = "aixyz_sessions'),
        ("docs/stores.md", "CACHES = {"),
        ("docs/stores.md", "AIXYZ_SESSION_STORE = {", "DatabaseSessionStore"),
        ("docs/stores.md", "AIXYZ_SESSION_STORE = {", "RedisSessionStore"),
    ],
)
def test_store_settings_examples_build_stores(example: tuple[str, ...], settings: Any) -> None:
    code = block(*example)
    code = code.replace('"myproject.sessions.store"', '"tests.test_readme.STORE"')
    namespace = run(code)
    if "CACHES" in namespace:
        assert "default" in namespace["CACHES"], "Django needs a 'default' cache (caches.E001)"
        settings.CACHES = namespace["CACHES"]
    assert isinstance(build_store(namespace["AIXYZ_SESSION_STORE"]), SessionStore)


STORE = InMemorySessionStore()


async def test_paid_view_and_paying_client_examples() -> None:
    view = run(block("docs/payments.md", "from django.http import JsonResponse"))["remember"]
    test_remember = run(
        block("docs/testing.md", "from aixyz_sessions.testing import PayingClient")
    )["test_remember"]
    for name in urlconf("readme_views", [path("remember/", view)]):
        with override_settings(MIDDLEWARE=MIDDLEWARE, ROOT_URLCONF=name, AIXYZ_X402=LOCAL):
            await test_remember()


async def test_tools_urls_and_asgi_examples(readme_tools: dict[str, Any]) -> None:
    from aixyz_sessions.testing import PayingClient

    namespace = run(block("docs/tools.md", "# urls.py"), urlpatterns=[], path=path, include=include)
    assert callable(namespace["application"])
    for name in urlconf("readme_urls", namespace["urlpatterns"]):
        with override_settings(MIDDLEWARE=MIDDLEWARE, ROOT_URLCONF=name, AIXYZ_X402=LOCAL):
            client = PayingClient()
            free = await client.post("/tools/echo", {"text": "hi"}, "application/json")
            assert json.loads(free.content) == {"result": "hi"}
            unpaid = await client.post(
                "/tools/remember", {"key": "a", "note": "b"}, "application/json", pay=False
            )
            assert unpaid.status_code == 402
            paid = await client.post(
                "/tools/remember", {"key": "a", "note": "b"}, "application/json"
            )
            assert json.loads(paid.content) == {"result": {"stored": "a"}}


def test_mcp_client_example(readme_tools: dict[str, Any], settings: Any) -> None:
    from aixyz_sessions.tools.mcp import mcp_asgi_app

    settings.AIXYZ_X402 = LOCAL
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    reset_runtime()
    reset_mcp_server()
    code = block("docs/tools.md", "from mcp import ClientSession")
    with serve(mcp_asgi_app()) as base:
        code = code.replace("http://127.0.0.1:8000/mcp", f"{base}/mcp")
        body = textwrap.indent(code, "    ")
        namespace = run(f"async def example(account):\n{body}\n    return result\n")
        result = asyncio.run(namespace["example"](Account.create()))
    reset_runtime()
    assert not result.is_error
    assert result.payment_response is not None and result.payment_response.success


def test_custom_store_example() -> None:
    namespace = run(block("docs/stores.md", "from aixyz_sessions.testing import StoreConformance"))
    namespace["MyStore"] = InMemorySessionStore
    case = namespace["TestMyStore"]()
    case.test_set_get_overwrite_delete()
    case.test_get_slides_expiry_with_the_entry_ttl()


def test_static_files_asgi_example(settings: Any) -> None:
    settings.STATIC_URL = "static/"  # as every startproject sets it
    namespace = run(block("docs/install.md", "# asgi.py, serving static files"))
    assert callable(namespace["application"])


def test_production_settings_example(settings: Any) -> None:
    namespace = run(block("docs/deployment.md", "# settings.py for production"))
    assert not namespace["DEBUG"] and namespace["ALLOWED_HOSTS"] == ["api.example.com"]
    config = parse_config(dict(namespace["AIXYZ_X402"], PAY_TO="0x" + "ab" * 20))
    assert not config.is_local and config.facilitator_url.startswith("https://")
    assert "default" in namespace["CACHES"], "Django needs a 'default' cache (caches.E001)"
    settings.CACHES = namespace["CACHES"]
    assert isinstance(build_store(namespace["AIXYZ_SESSION_STORE"]), SessionStore)


@pytest.mark.parametrize(
    ("example", "name", "route", "body"),
    [
        (("docs/payments.md", "# views.py: a sync view"), "counter", "counter/", None),
        (
            ("docs/payments.md", "# api.py: Django REST framework"),
            "Notes",
            "notes/",
            {"key": "k", "note": "n"},
        ),
        (("docs/payments.md", "# ninja_api.py: django-ninja"), "api", "api/", None),
    ],
)
async def test_sync_drf_and_ninja_examples(
    example: tuple[str, str], name: str, route: str, body: dict[str, str] | None
) -> None:
    from asgiref.sync import sync_to_async

    from aixyz_sessions.testing import PayingClient

    namespace = await sync_to_async(run)(block(*example))
    target = namespace[name]
    if name == "Notes":
        view: Any = path(route, target.as_view())
    elif name == "api":
        target.urls_namespace = "readme_ninja"
        view = path(route, target.urls)
    else:
        view = path(route, target)
    for conf in urlconf("readme_frameworks", [view]):
        with override_settings(MIDDLEWARE=MIDDLEWARE, ROOT_URLCONF=conf, AIXYZ_X402=LOCAL):
            client = PayingClient()
            if name == "counter":
                first = await client.get("/counter/")
                second = await client.get("/counter/")
                assert json.loads(second.content) == {"payer": client.address, "count": 2}
                assert first.status_code == 200
            elif name == "Notes":
                unpaid = await client.post("/notes/", body, "application/json", pay=False)
                assert unpaid.status_code == 402
                paid = await client.post("/notes/", body, "application/json")
                assert json.loads(paid.content) == {"payer": client.address, "stored": "k"}
            else:
                unpaid = await client.post("/api/remember?key=k&note=n", pay=False)
                assert unpaid.status_code == 402
                paid = await client.post("/api/remember?key=k&note=n")
                assert json.loads(paid.content) == {"payer": client.address, "stored": "k"}
            session = get_store()
            assert await session.get(client.address.lower(), "count" if name == "counter" else "k")


def test_x402_httpx_client_example(readme_tools: dict[str, Any]) -> None:
    from django.core.asgi import get_asgi_application

    namespace = run(block("docs/tools.md", "# urls.py"), urlpatterns=[], path=path, include=include)
    for name in urlconf("readme_httpx", namespace["urlpatterns"]):
        with (
            override_settings(MIDDLEWARE=MIDDLEWARE, ROOT_URLCONF=name, AIXYZ_X402=LOCAL),
            serve(get_asgi_application()) as base,
        ):
            code = block("docs/testing.md", "from eth_account import Account", "x402HttpxClient")
            code = code.replace("http://127.0.0.1:8000", base)
            code = code.replace("print(response.json())", "printed = response.json()")
            body = textwrap.indent(code, "    ")
            example = run(f"async def example():\n{body}\n    return printed\n")["example"]
            assert asyncio.run(example()) == {"result": {"stored": "a"}}


def test_sign_in_examples(readme_tools: dict[str, Any]) -> None:
    """The server block registers a tool that takes sign-ins; the client block signs in."""
    from x402 import x402Client
    from x402.http.clients.httpx import x402HttpxClient
    from x402.mechanisms.evm.exact import register_exact_evm_client

    run(block("docs/returning-payers.md", "# views.py / tools.py: who may sign in"))
    come_back = run(block("docs/returning-payers.md", "import httpx", "create_siwx_payload"))[
        "come_back"
    ]
    patterns = [path("tools/", include("aixyz_sessions.tools.urls"))]
    account = Account.create()
    with served("readme_sign_in", patterns) as base:

        async def pay_then_come_back() -> Any:
            payments = x402Client()
            register_exact_evm_client(payments, account)
            async with x402HttpxClient(payments, base_url=base, timeout=30) as http:
                paid = await http.post("/tools/read", json={"key": "a"})
                assert paid.status_code == 200 and "PAYMENT-RESPONSE" in paid.headers
            return await come_back(account, url=f"{base}/tools/read")

        assert asyncio.run(pay_then_come_back()) == {"result": {"value": None}}
        stranger = asyncio.run(come_back(Account.create(), url=f"{base}/tools/read"))
        assert stranger["error"] == "invalid_sign_in"


def test_safe_retry_example(readme_tools: dict[str, Any]) -> None:
    """The client example pays once; its retries (lost answers) get the same answer."""

    pay_once = run(
        block("docs/returning-payers.md", "import httpx", "append_payment_identifier_to_extensions")
    )["pay_once"]
    patterns = [path("tools/", include("aixyz_sessions.tools.urls"))]
    account = Account.create()
    with served("readme_retries", patterns) as base:
        from aixyz_sessions.payments.local import get_local_facilitator

        ledger = get_local_facilitator().ledger
        before = ledger.settled_count
        answer = asyncio.run(pay_once(account, url=f"{base}/tools/remember"))
        assert answer == {"result": {"stored": "a"}}
        assert ledger.settled_count == before + 1


def test_a2a_client_example(readme_tools: dict[str, Any]) -> None:
    """The agent page's A2A client calls tools.md's ``remember`` through a paid message."""

    from aixyz_sessions.agent.server import reset_agent
    from tests.agent_app import AGENT

    store_via_a2a = run(block("docs/agent.md", "from a2a.client import"))["store_via_a2a"]
    namespace = run(
        block("docs/agent.md", "# settings.py: the agent"),
        urlpatterns=[],
        path=path,
        include=include,
    )
    assert namespace["urlpatterns"][0].urlconf_name.__name__ == "aixyz_sessions.agent.urls"
    assert namespace["AIXYZ_AGENT"]["PRICE"] == "$0.001"
    patterns = [path("", include("aixyz_sessions.agent.urls"))]
    account = Account.create()

    async def stored(key: str) -> str | None:
        return await get_store().get(account.address.lower(), key)

    agent = {**AGENT, **namespace["AIXYZ_AGENT"]}
    with served("readme_a2a", patterns, AIXYZ_AGENT=agent) as base:
        reset_agent()
        try:
            task = asyncio.run(store_via_a2a(account, base))
            assert task.status.state == 3  # completed
            assert asyncio.run(stored("a")) == "b"
        finally:
            reset_agent()


def test_tool_loop_agent_example() -> None:
    from aixyz_sessions.agent.loop import ToolLoopAgent

    agent = run(block("docs/agent.md", "# myapp/agents.py"))["notes_agent"]
    assert isinstance(agent, ToolLoopAgent) and agent.max_steps == 10
    assert agent.tool_names == ["remember"]  # tools.md's tool


def test_websocket_client_example(readme_tools: dict[str, Any]) -> None:
    """The tools page's WebSocket client pays from the payment_required error, against uvicorn."""

    remember_over_ws = run(block("docs/tools.md", "# a WebSocket client that pays"))[
        "remember_over_ws"
    ]
    patterns = [path("tools/", include("aixyz_sessions.tools.urls"))]
    account = Account.create()
    with served("readme_ws", patterns) as base:
        ws_url = base.replace("http://", "ws://") + "/ws/tools/"
        reply = asyncio.run(remember_over_ws(account, url=ws_url))
    assert reply["id"] == 2 and reply["result"] == {"stored": "a"}, reply
    assert reply["payment_response"]


def test_readme_shortest_path_to_a_paid_tool() -> None:
    """README's quick start: its settings, tool, urls and asgi.py under uvicorn; its client pays."""
    configured = run(
        block("README.md", "# settings.py: add at the end"), INSTALLED_APPS=[], MIDDLEWARE=[]
    )
    assert configured["INSTALLED_APPS"] == ["aixyz_sessions", "myapp"]
    assert configured["MIDDLEWARE"] == MIDDLEWARE
    assert parse_config(configured["AIXYZ_X402"]).is_local
    before = {t.name for t in registry}
    run(block("README.md", "# myapp/tools.py"))
    try:
        assert "keep_note" in {t.name for t in registry}
        patterns = run(block("README.md", "# urls.py"), urlpatterns=[])  # it imports include
        for name in urlconf("readme_quick_start", patterns["urlpatterns"]):
            with override_settings(
                MIDDLEWARE=configured["MIDDLEWARE"],
                ROOT_URLCONF=name,
                AIXYZ_X402=configured["AIXYZ_X402"],
                ALLOWED_HOSTS=LOOPBACK_HOSTS,
            ):
                reset_runtime()
                application = run(block("README.md", "# asgi.py"))["application"]
                with serve(application) as base:
                    pay = run(block("README.md", "# pay.py"))["pay"]
                    answer = asyncio.run(pay(base))
                    assert answer["result"]["note"] == "hi", answer
                    payer = answer["result"]["payer"]
                    assert payer.startswith("0x")
                    assert asyncio.run(get_store().get(payer.lower(), "note")) == "hi"
    finally:
        for item in list(registry):
            if item.name not in before:
                registry.unregister(item.name)
        reset_mcp_server()
        reset_runtime()


def test_pytest_settings_example() -> None:
    """The testing page's pytest options are the ones this suite itself runs with."""
    import tomllib

    shown = tomllib.loads(block("docs/testing.md", "[tool.pytest.ini_options]"))
    options = shown["tool"]["pytest"]["ini_options"]
    assert options["DJANGO_SETTINGS_MODULE"] == "mysite.settings"
    ours = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    for key in ("asyncio_mode", "asyncio_default_fixture_loop_scope"):
        assert options[key] == ours[key], key

"""Fail fast: a setting that cannot work stops the ASGI server at start, names itself under WSGI.

And a store that cannot work until the deployment is fixed (a table not
migrated) is a 500 that names the fix, on every transport, not a 503 "retry".
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.http import HttpResponse
from django.test import Client, override_settings

from aixyz_sessions import SessionStoreMisconfigured
from aixyz_sessions.checks.startup import NotReady, ensure_ready
from aixyz_sessions.payments.local import get_local_facilitator
from aixyz_sessions.stores.memory import InMemorySessionStore
from aixyz_sessions.testing import PayingClient
from tests.demo_server import ROOT, demo_env
from tests.payments_helpers import LOCAL, MIDDLEWARE, free_port
from tests.tools_app import Wallet, example_tools, paid_ws_call, websocket

pytestmark = pytest.mark.django_db


def _start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Start the demo's ASGI app under uvicorn; it must exit by itself."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "demo_project.asgi:application",
            "--port",
            str(free_port()),
            "--host",
            "127.0.0.1",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_asgi_refuses_to_start_without_a_valid_pay_to(tmp_path: Path) -> None:
    env = {**demo_env(tmp_path), "X402_PAY_TO": "not-an-address"}
    done = _start(env)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "aixyz_sessions cannot start" in output and "PAY_TO" in output, output


def test_asgi_refuses_to_start_with_the_tables_not_migrated(tmp_path: Path) -> None:
    done = _start(demo_env(tmp_path))  # a fresh SQLite file: nothing migrated
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "aixyz_sessions.E012" in output and "Run `python manage.py migrate`" in output, output


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_with_the_database_shows_e012_and_migrate_still_runs(tmp_path: Path) -> None:
    """The command the refusal names finds it; ``migrate`` (which checks first) still fixes it."""
    env = demo_env(tmp_path)  # a fresh SQLite file: nothing migrated
    plain = _manage(env, "check")
    assert plain.returncode == 0, plain.stdout + plain.stderr  # no database: nothing to see
    checked = _manage(env, "check", "--database", "default")
    assert checked.returncode != 0
    output = checked.stdout + checked.stderr
    assert "aixyz_sessions.E012" in output and "Run `python manage.py migrate`" in output, output
    migrated = _manage(env, "migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    again = _manage(env, "check", "--database", "default")
    assert again.returncode == 0 and "E012" not in again.stdout + again.stderr


def test_asgi_refuses_to_start_after_an_upgrade_without_migrate(tmp_path: Path) -> None:
    """Tables there, a newer migration not applied (a new column): refused, with the fix."""
    env = demo_env(tmp_path)
    for args in (("migrate", "--noinput"), ("migrate", "aixyz_sessions", "0003", "--noinput")):
        done = _manage(env, *args)
        assert done.returncode == 0, done.stdout + done.stderr
    done = _start(env)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "aixyz_sessions.E012" in output and "0004_paymentclaim_value" in output, output
    assert "Run `python manage.py migrate`" in output


def test_ensure_ready_names_a_misspelled_store() -> None:
    with override_settings(AIXYZ_SESSION_STORE="aixyz_sessions.stores.memry.InMemorySessionStore"):
        with pytest.raises(NotReady, match=r"aixyz_sessions\.E001") as raised:
            ensure_ready()
    assert "memry" in str(raised.value)
    ensure_ready()  # the default store: nothing to report


def test_wsgi_first_paid_request_is_a_json_500_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger = get_local_facilitator().ledger
    before = ledger.settled_count
    broken = {"PAY_TO": "0x123", "NETWORK": "eip155:84532", "FACILITATOR": "local"}
    with (
        override_settings(
            MIDDLEWARE=MIDDLEWARE, ROOT_URLCONF="tests.payments_urls", AIXYZ_X402=broken
        ),
        caplog.at_level(logging.ERROR, logger="aixyz_sessions"),
    ):
        client = Client()
        responses = [client.get("/paid/"), client.post("/paid/", {})]
    for response in responses:
        assert response.status_code == 500
        assert response["Content-Type"] == "application/json"
        body = json.loads(response.content)
        assert body["error"] == "server_misconfigured" and "Traceback" not in body["message"]
    logged = [r for r in caplog.records if "cannot start" in r.getMessage()]
    assert len(logged) == 1 and "PAY_TO" in logged[0].getMessage()
    assert ledger.settled_count == before
    # Fixed settings are picked up (the problem is looked for again after a change).
    with override_settings(
        MIDDLEWARE=MIDDLEWARE, ROOT_URLCONF="tests.payments_urls", AIXYZ_X402=LOCAL
    ):
        assert Client().get("/paid/").status_code == 402


def test_paid_views_without_the_middleware_are_a_check_error() -> None:
    with override_settings(MIDDLEWARE=[], ROOT_URLCONF="tests.payments_urls", AIXYZ_X402=LOCAL):
        with pytest.raises(SystemCheckError, match=r"aixyz_sessions\.E107") as raised:
            call_command("check", "--tag", "aixyz_sessions")
    assert "tests.payments_urls.paid_view" in str(raised.value)
    with override_settings(
        MIDDLEWARE=MIDDLEWARE, ROOT_URLCONF="tests.payments_urls", AIXYZ_X402=LOCAL
    ):
        call_command("check", "--tag", "aixyz_sessions")


def test_paid_tools_over_http_without_the_middleware_are_a_check_error() -> None:
    with example_tools(), override_settings(MIDDLEWARE=[], ROOT_URLCONF="tests.tools_app"):
        with pytest.raises(SystemCheckError, match=r"aixyz_sessions\.E107"):
            call_command("check", "--tag", "aixyz_sessions")


def test_an_agent_alone_without_the_middleware_is_a_check_error_and_serves_nothing() -> None:
    """E107 once missed a project serving only the agent; its POST /agent then answered 500
    from inside. It is found by the check, and a paid message fails closed (nothing runs)."""
    from tests import mcp_helpers
    from tests.agent_app import AGENT

    ask = {"key": "k"}
    message = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "message/send",
        "params": {
            "message": {
                "role": "user",
                "messageId": "m1",
                "parts": [{"kind": "data", "data": {"tool": mcp_helpers.GET, "arguments": ask}}],
            }
        },
    }
    mcp_helpers.register_examples()
    try:
        with override_settings(
            MIDDLEWARE=[], ROOT_URLCONF="tests.agent_only_urls", AIXYZ_AGENT=AGENT, AIXYZ_X402=LOCAL
        ):
            with pytest.raises(SystemCheckError, match=r"aixyz_sessions\.E107") as raised:
                call_command("check", "--tag", "aixyz_sessions")
            assert "aixyz_sessions.agent.views.agent" in str(raised.value)
            answered = Client().post("/agent", message, content_type="application/json")
    finally:
        mcp_helpers.unregister_examples()
    assert answered.status_code == 500, answered.content
    assert json.loads(answered.content)["error"] == "server_misconfigured"
    assert "X402Middleware" in json.loads(answered.content)["message"]


def test_a_view_priced_per_request_fails_closed_by_itself() -> None:
    """Without the middleware, a request the view's price function prices is never served."""
    from django.test import RequestFactory

    from aixyz_sessions.payments.decorators import PaidSpec, PaymentNeeded, priced_per_request

    served: list[str] = []

    @priced_per_request(lambda request, kwargs: PaidSpec(price="$0.01") if kwargs["n"] else None)
    def view(request: Any, n: int) -> HttpResponse:
        served.append(str(n))
        return HttpResponse("ok")

    factory = RequestFactory()
    assert isinstance(view(factory.get("/x"), n=1), PaymentNeeded)
    assert view(factory.get("/x"), n=0).content == b"ok"
    assert served == ["0"]


def test_a_free_request_is_priced_once() -> None:
    """The middleware's look at a free request is not repeated by the view's own guard."""
    from django.test import RequestFactory

    from aixyz_sessions.payments.decorators import PaidSpec, paid_spec_of, priced_per_request

    asked: list[int] = []

    def price_of(request: Any, kwargs: dict[str, Any]) -> PaidSpec | None:
        asked.append(kwargs["n"])
        return PaidSpec(price="$0.01") if kwargs["n"] else None

    @priced_per_request(price_of)
    def view(request: Any, n: int) -> HttpResponse:
        return HttpResponse("ok")

    request = RequestFactory().get("/x")
    assert paid_spec_of(view, "GET", request, {"n": 0}) is None  # what the middleware does
    assert view(request, n=0).content == b"ok"
    assert asked == [0]
    other = RequestFactory().get("/x")  # a request the middleware never looked at
    assert view(other, n=0).content == b"ok"
    assert asked == [0, 0]


# -- a store that needs the deployment fixed -------------------------------------------------


class UnmigratedStore(InMemorySessionStore):
    """Every operation finds its table missing, as an unmigrated database store does."""

    @staticmethod
    def _missing() -> SessionStoreMisconfigured:
        return SessionStoreMisconfigured("table 'x' does not exist; run `manage.py migrate`")

    async def get(self, payer: str, key: str) -> str | None:
        raise self._missing()

    async def get_many(self, payer: str, keys: Any) -> dict[str, str | None]:
        raise self._missing()

    async def set(self, payer: str, key: str, value: str, *, ttl_ms: int | None = None) -> None:
        raise self._missing()

    async def set_many(self, payer: str, entries: Any, *, ttl_ms: int | None = None) -> None:
        raise self._missing()


STORE = f"{__name__}.UnmigratedStore"
GUARDED = {**LOCAL, "REPLAY_GUARD": "aixyz_sessions.replay.InMemoryReplayGuard"}


#: What a client reads; the store's own words (its fix) are in the log, and shown with DEBUG.
MISCONFIGURED = "the session store is misconfigured; the server's log names the fix"
FIX = "table 'x' does not exist; run `manage.py migrate`"


def _assert_500(response: Any, message: str = MISCONFIGURED) -> None:
    assert response.status_code == 500, response.content
    body = json.loads(response.content)
    assert body == {"error": "session_store_misconfigured", "message": message}
    assert "Retry-After" not in response and "PAYMENT-RESPONSE" not in response


async def test_misconfigured_store_is_a_500_naming_the_fix_over_http(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger = get_local_facilitator().ledger
    before = ledger.settled_count
    with override_settings(
        AIXYZ_SESSION_STORE=STORE,
        MIDDLEWARE=MIDDLEWARE,
        ROOT_URLCONF="tests.payments_urls",
        AIXYZ_X402=GUARDED,
    ):
        _assert_500(await PayingClient().get("/paid/"))
        assert FIX in caplog.text  # the log names the fix
        with override_settings(DEBUG=True):  # and so does the answer, while debugging
            _assert_500(await PayingClient().get("/paid/"), FIX)
    with (
        example_tools(),
        override_settings(
            AIXYZ_SESSION_STORE=STORE,
            MIDDLEWARE=MIDDLEWARE,
            ROOT_URLCONF="tests.tools_app",
            AIXYZ_X402=GUARDED,
        ),
    ):
        response = await PayingClient().post(
            "/tools/put", {"key": "k", "value": "v"}, content_type="application/json"
        )
    _assert_500(response)
    assert ledger.settled_count == before


async def test_misconfigured_store_is_its_own_error_code_over_websocket() -> None:
    with (
        example_tools(),
        override_settings(
            AIXYZ_SESSION_STORE=STORE,
            MIDDLEWARE=MIDDLEWARE,
            ROOT_URLCONF="tests.tools_app",
            AIXYZ_X402=GUARDED,
        ),
    ):
        async with websocket() as ws:
            reply = await paid_ws_call(ws, Wallet(), "put", {"key": "k", "value": "v"})
    assert reply["error"] == {"code": "session_store_misconfigured", "message": MISCONFIGURED}


async def test_misconfigured_store_is_its_own_error_code_over_mcp(settings: Any) -> None:
    from aixyz_sessions.payments.runtime import reset_runtime
    from aixyz_sessions.tools.mcp import mcp_asgi_app, reset_mcp_server
    from tests.mcp_helpers import PUT, Payer, connect, register_examples, unregister_examples
    from tests.payments_helpers import serve

    settings.AIXYZ_X402 = GUARDED
    settings.AIXYZ_SESSION_STORE = STORE
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    register_examples()
    reset_runtime()
    reset_mcp_server()
    try:
        with serve(mcp_asgi_app()) as url:
            async with connect(url) as session:
                result = await Payer().session(session).call_tool(PUT, {"key": "k", "value": "v"})
    finally:
        unregister_examples()
        reset_runtime()
        reset_mcp_server()
    assert result.is_error and result.payment_response is None
    structured = result.raw_result.structuredContent
    assert structured is not None and structured["error"] == "session_store_misconfigured"

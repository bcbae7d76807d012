"""Operations, end to end: paid calls over every transport move ``/metrics`` by exactly what
was paid, send each signal once, and leave their spans in an in-memory OpenTelemetry exporter.

A real server on loopback (``tests.options_server``: uvicorn in this process,
so the test's tracer provider and signal receivers see the server's work) and
the SDK's own clients. The metered tool charges $0.0123 of its $0.05 maximum:
12300 atomic units.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from prometheus_client.parser import text_string_to_metric_families
from x402.http import decode_payment_required_header, encode_payment_signature_header
from x402.http.clients.httpx import x402HttpxClient
from x402.schemas import PaymentRequired

from tests.options_app import METERED_TOOL
from tests.options_server import options_server, with_channels
from tests.signal_helpers import names
from tests.test_channels_e2e import payer_client
from tests.test_payment_options_e2e import TRANSPORTS, signer
from tests.tracing_helpers import named, recorded_spans

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "metrics-token-for-the-tests-0123456789"
METRICS = {"TOKEN": TOKEN, "STAFF": True}
BEARER = {"Authorization": f"Bearer {TOKEN}"}
NETWORK = "eip155:84532"
USDC = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
TOOL = f"tool:{METERED_TOOL}"
#: The admin's sign-in in front of the payments.
ADMIN_MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "aixyz_sessions.payments.middleware.X402Middleware",
]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(base: str) -> Samples:
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        response = await plain.get("/metrics", headers=BEARER)
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    return parse(response.text)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def moved(before: Samples, after: Samples, name: str) -> list[float]:
    """How much each series of ``name`` that moved between two scrapes moved."""
    return sorted(
        after[key] - before.get(key, 0.0)
        for key in after
        if key[0] == name and after[key] != before.get(key, 0.0)
    )


@pytest.fixture
def base() -> Iterator[str]:
    with options_server(AIXYZ_METRICS=METRICS) as url:
        yield url


@pytest.mark.parametrize("transport", list(TRANSPORTS))
async def test_a_paid_call_moves_metrics_signals_and_spans_by_what_was_paid(
    base: str, transport: str, heard: list[tuple[str, dict[str, Any]]]
) -> None:
    account = Account.create()
    before = await scrape(base)
    with recorded_spans() as exporter:
        paid = await TRANSPORTS[transport](base, account, {"key": "k", "amount": "$0.0123"})
        spans = exporter.get_finished_spans()
    after = await scrape(base)
    assert paid == "12300"

    # Metrics: one settled call, revenue by exactly what settled, one verify and one settle.
    terms = {"scheme": "upto", "network": NETWORK}
    settled = {"resource": TOOL, **terms, "outcome": "settled"}
    assert delta(before, after, "aixyz_paid_calls_total", **settled) == 1
    revenue = {"resource": TOOL, **terms, "asset": USDC}
    assert delta(before, after, "aixyz_revenue_atomic_units_total", **revenue) == 12300
    assert delta(before, after, "aixyz_payment_verify_seconds_count", **terms) == 1
    assert delta(before, after, "aixyz_payment_settle_seconds_count", **terms) == 1
    tool = {"tool": METERED_TOOL, "outcome": "ok"}
    assert delta(before, after, "aixyz_tool_seconds_count", **tool) == 1
    # The client's first try had no payment: one answer asked for it.
    asked = {"resource": TOOL, "reason": "missing"}
    assert delta(before, after, "aixyz_payment_required_total", **asked) == 1
    assert moved(before, after, "aixyz_paid_calls_total") == [1]  # nothing else moved
    assert moved(before, after, "aixyz_revenue_atomic_units_total") == [12300]

    # Signals: each event once.
    assert names(heard) == ["payment_verified", "payment_settled"]

    # Spans: the call, its verification and settlement inside it, the tool inside it too.
    (call,) = named(spans, "x402.call ")
    assert call.name == f"x402.call {TOOL}"
    assert call.attributes is not None
    assert call.attributes["x402.outcome"] == "settled"
    assert call.attributes["x402.amount"] == 12300
    assert call.attributes["x402.payer"] == account.address
    assert (call.attributes["x402.scheme"], call.attributes["x402.network"]) == ("upto", NETWORK)
    (verify,) = named(spans, "x402.verify")
    (settle,) = named(spans, "x402.settle")
    (executed,) = named(spans, "execute_tool ")
    assert executed.name == f"execute_tool {METERED_TOOL}"
    assert executed.attributes is not None
    assert executed.attributes["gen_ai.operation.name"] == "execute_tool"
    assert executed.attributes["gen_ai.tool.name"] == METERED_TOOL
    assert settle.attributes is not None and settle.attributes["x402.amount"] == 12300
    for child in (verify, settle):
        assert child.parent is not None and child.parent.span_id == call.context.span_id
    assert call.context.trace_id == executed.context.trace_id
    assert verify.end_time <= executed.start_time <= executed.end_time <= settle.start_time
    turns = named(spans, "invoke_agent ")
    if transport == "a2a":  # the A2A message is an agent turn that invoked the tool
        (turn,) = turns
        assert turn.attributes is not None
        assert turn.attributes["gen_ai.operation.name"] == "invoke_agent"
        assert turn.attributes["gen_ai.conversation.id"]
        assert executed.parent is not None and executed.parent.span_id == turn.context.span_id
    else:
        assert turns == []


async def test_refusals_replays_and_failures_are_counted_once_each(
    base: str, heard: list[tuple[str, dict[str, Any]]]
) -> None:
    before = await scrape(base)
    account = Account.create()
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        unpaid = await plain.get("/two-networks/")
        required = decode_payment_required_header(unpaid.headers["PAYMENT-REQUIRED"])
        assert isinstance(required, PaymentRequired)
        signed = await signer(account).create_payment_payload(required)
        forged = signed.model_copy(deep=True)
        forged.payload["signature"] = "0x" + "11" * 65
        header = {"PAYMENT-SIGNATURE": encode_payment_signature_header(forged)}
        assert (await plain.get("/two-networks/", headers=header)).status_code == 402
        garbage = await plain.get("/two-networks/", headers={"PAYMENT-SIGNATURE": "%%%"})
        assert garbage.status_code in (400, 402)
    # A view that fails spends its authorization; sent again, this server's guard refuses it.
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        unpaid = await plain.post("/metered/", json={})
        required = decode_payment_required_header(unpaid.headers["PAYMENT-REQUIRED"])
        payment = await signer(account).create_payment_payload(required)
        header = {"PAYMENT-SIGNATURE": encode_payment_signature_header(payment)}
        failed = await plain.post("/metered/", json={"fail": True, "key": "x"}, headers=header)
        again = await plain.post("/metered/", json={"key": "x"}, headers=header)
    assert failed.status_code == 500 and again.status_code == 402
    after = await scrape(base)

    route, metered = "/two-networks/", "/metered/"
    upto = {"scheme": "upto", "network": NETWORK}
    no_terms = {"scheme": "", "network": ""}  # refused before any option was verified
    asked = "aixyz_payment_required_total"
    for reason in ("missing", "refused", "unreadable"):
        assert delta(before, after, asked, resource=route, reason=reason) == 1, reason
    assert delta(before, after, asked, resource=metered, reason="replayed") == 1
    calls = "aixyz_paid_calls_total"
    assert delta(before, after, calls, resource=route, **no_terms, outcome="refused") == 1
    assert delta(before, after, calls, resource=metered, **upto, outcome="failed") == 1
    assert delta(before, after, calls, resource=metered, **upto, outcome="replayed") == 1
    assert delta(before, after, "aixyz_replays_refused_total", resource=metered) == 1
    assert moved(before, after, calls) == [1, 1, 1]  # those three, nothing else
    assert moved(before, after, "aixyz_revenue_atomic_units_total") == []
    assert names(heard) == ["payment_refused", "payment_verified", "payment_refused"]


async def test_metrics_are_the_operators_alone(base: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        anonymous = await plain.get("/metrics")
        wrong = await plain.get("/metrics", headers={"Authorization": "Bearer " + "x" * 38})
        basic = await plain.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"})
        posted = await plain.post("/metrics", headers=BEARER)
        right = await plain.get("/metrics", headers=BEARER)
        openmetrics = await plain.get(
            "/metrics", headers={**BEARER, "Accept": "application/openmetrics-text"}
        )
    for refused in (anonymous, wrong, basic):
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert "aixyz_" not in refused.text
    assert posted.status_code == 405
    assert right.status_code == 200 and right.headers["Content-Type"].startswith("text/plain")
    assert "# TYPE aixyz_paid_calls_total counter" in right.text  # listed before any call
    assert openmetrics.headers["Content-Type"].startswith("application/openmetrics-text")
    assert openmetrics.text.rstrip().endswith("# EOF")


async def test_a_staff_user_reads_the_metrics_in_a_browser_and_nobody_else() -> None:
    from asgiref.sync import sync_to_async
    from django.contrib.auth.models import User

    await sync_to_async(User.objects.create_user)("staff", password="pw-staff-1", is_staff=True)
    await sync_to_async(User.objects.create_user)("member", password="pw-member-1")
    with options_server(AIXYZ_METRICS={"STAFF": True}, MIDDLEWARE=ADMIN_MIDDLEWARE) as base:
        answers = {}
        for name, password in (("staff", "pw-staff-1"), ("member", "pw-member-1")):
            async with httpx.AsyncClient(base_url=base, timeout=30, follow_redirects=True) as web:
                page = await web.get("/admin/login/")
                token = web.cookies.get("csrftoken")
                assert page.status_code == 200 and token
                await web.post(
                    "/admin/login/",
                    data={"username": name, "password": password, "csrfmiddlewaretoken": token},
                    headers={"Referer": f"{base}/admin/login/"},
                )
                answers[name] = await web.get("/metrics")
        async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
            anonymous = await plain.get("/metrics")
    assert answers["staff"].status_code == 200 and "aixyz_paid_calls_total" in answers["staff"].text
    assert answers["member"].status_code == 403
    assert anonymous.status_code == 403 and "WWW-Authenticate" not in anonymous.headers


async def test_metrics_are_off_unless_configured() -> None:
    with options_server() as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
            off = await plain.get("/metrics", headers=BEARER)
    assert off.status_code == 404


async def test_a_channel_call_counts_its_charge_and_the_open_channel() -> None:
    with options_server(with_channels("database"), AIXYZ_METRICS=METRICS) as base:
        before = await scrape(base)
        account = Account.create()
        async with x402HttpxClient(payer_client(account), base_url=base, timeout=30) as http:
            for index in range(3):
                response = await http.get("/two-networks/", params={"key": f"k{index}"})
                assert response.status_code == 200, response.text
        after = await scrape(base)
    terms = {"resource": "/two-networks/", "scheme": "batch-settlement", "network": NETWORK}
    assert delta(before, after, "aixyz_paid_calls_total", **terms, outcome="settled") == 3
    # A voucher's charge is revenue; the deposit is not.
    assert delta(before, after, "aixyz_revenue_atomic_units_total", **terms, asset=USDC) == 30000
    assert value(after, "aixyz_channel_storage_up") == 1
    assert delta(before, after, "aixyz_channels_open", asset=USDC) == 1
    assert delta(before, after, "aixyz_channel_unclaimed_atomic_units", asset=USDC) == 30000
    assert value(after, "aixyz_channel_balance_atomic_units", asset=USDC) >= 30000


async def test_an_agent_turn_is_traced_with_its_model_steps_tools_and_tokens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django.test import override_settings
    from prometheus_client import REGISTRY

    from tests import mcp_helpers
    from tests.agent_app import model_agent_server
    from tests.fake_openai import FakeModel
    from tests.test_agent_a2a import paying, rpc, v03_message

    put, get = mcp_helpers.PUT, mcp_helpers.GET
    model = FakeModel([(put, {"key": "city", "value": "Porto"}), (get, {"key": "city"})])

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    tokens = "aixyz_agent_tokens_total"
    with override_settings(AIXYZ_METRICS=METRICS), model_agent_server(model, monkeypatch) as base:
        model.usage = (100, 20)  # every step (after the server's reset): put, get, answer
        before = (
            sample("aixyz_agent_turns_total", model="scripted"),
            sample(tokens, model="scripted", type="input"),
            sample(tokens, model="scripted", type="output"),
        )
        with recorded_spans() as exporter:
            async with paying(Account.create(), base) as http:
                text = v03_message({"kind": "text", "text": "I live in Porto"})
                response = await http.post("/agent", json=rpc("message/send", text))
            spans = exporter.get_finished_spans()
        after = (
            sample("aixyz_agent_turns_total", model="scripted"),
            sample(tokens, model="scripted", type="input"),
            sample(tokens, model="scripted", type="output"),
        )
    assert response.status_code == 200 and response.json()["result"]["status"]["state"] == (
        "completed"
    ), response.text
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 300, 60]
    (call,) = named(spans, "x402.call ")
    assert call.name == "x402.call agent"
    assert call.attributes is not None and call.attributes["x402.outcome"] == "settled"
    (turn,) = named(spans, "invoke_agent ")
    assert turn.attributes is not None
    assert turn.attributes["gen_ai.usage.input_tokens"] == 300
    assert turn.attributes["gen_ai.usage.output_tokens"] == 60
    assert turn.attributes["gen_ai.request.model"] == "scripted"
    steps = named(spans, "chat scripted")
    assert len(steps) == 3
    for step in steps:
        assert step.parent is not None and step.parent.span_id == turn.context.span_id
        assert step.attributes is not None
        assert step.attributes["gen_ai.operation.name"] == "chat"
        assert step.attributes["gen_ai.usage.input_tokens"] == 100
        assert step.kind.name == "CLIENT"
    tools = named(spans, "execute_tool ")
    assert sorted(t.name for t in tools) == [f"execute_tool {get}", f"execute_tool {put}"]
    assert all(t.parent is not None and t.parent.span_id == turn.context.span_id for t in tools)


def test_spans_still_queued_are_sent_when_the_server_stops(tmp_path: Path) -> None:
    """uvicorn ends by re-raising its stop signal, so the SDK's exit hook never runs: the
    lifespan shutdown flushes the batch (a minute long here) instead."""
    import subprocess
    import sys

    from tests.demo_server import ROOT, DemoServer, demo_env, running
    from tests.payments_helpers import free_port

    env = {**demo_env(tmp_path), "DJANGO_SETTINGS_MODULE": "tests.otel_demo_settings"}
    migrated = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrated.returncode == 0, migrated.stderr
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "uvicorn.log"
    server = [sys.executable, "-m", "uvicorn", "demo_project.asgi:application"]
    with log.open("w") as output:
        process = subprocess.Popen(
            [*server, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    with running(process, f"{url}/healthz", log, "the demo server"):
        DemoServer(url, env, log).paid_put("traced", "yes")
        assert '"name": "x402.call tool:put-content"' not in log.read_text()  # still queued
    printed = log.read_text()
    assert process.returncode in (0, -15), printed  # uvicorn re-raises SIGTERM
    assert '"name": "x402.call tool:put-content"' in printed, printed[-3000:]
    assert '"name": "execute_tool put-content"' in printed

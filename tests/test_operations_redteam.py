"""Red-team of the operations features: ``/metrics``, its labels, the spans, the counting.

Each test is an attack against a real server on loopback (``tests.options_server``:
uvicorn in this process, SQLite in memory, the local facilitator), with this
module as its URLconf: the options app's routes plus a few of an attacker's
favourite shapes (a path converter, a regex route, a slow paid view, a
sign-in-only view behind a converter). Three attacks found bugs, fixed since
(their docstrings say "Was a BUG"): a sign-in labelled by its path, a metric
write that raised into a settled call, the entrypoint's ``rm -rf``.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.http import HttpRequest, JsonResponse
from django.urls import path, re_path
from eth_account import Account
from x402.http import decode_payment_required_header, encode_payment_signature_header
from x402.http.clients.httpx import x402HttpxClient
from x402.schemas import PaymentRequired

from aixyz_sessions import get_payer
from aixyz_sessions.payments import paid, sign_in_required
from aixyz_sessions.payments.local import get_local_facilitator
from tests.options_app import SETTINGS as OPTIONS_SETTINGS
from tests.options_app import urlpatterns as options_urlpatterns
from tests.options_server import options_server, with_channels
from tests.test_operations_e2e import (
    ADMIN_MIDDLEWARE,
    BEARER,
    METRICS,
    NETWORK,
    TOKEN,
    Samples,
    delta,
    moved,
    parse,
    scrape,
)
from tests.test_payment_options_e2e import signer
from tests.tracing_helpers import named, recorded_spans

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = ROOT / "deploy" / "entrypoint.sh"
CALLS = "aixyz_paid_calls_total"
REVENUE = "aixyz_revenue_atomic_units_total"
ASKED = "aixyz_payment_required_total"
#: Every scheme and network this server is configured with ("" : refused before any
#: option was verified). A label value outside these was chosen by a client.
SCHEMES = {"", "exact", "upto", "batch-settlement"}
NETWORKS = {"", "eip155:84532", "eip155:8453"}
USDC = {
    "",
    "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
    "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
}


# -- the attacker's routes -------------------------------------------------------------------


@paid("$0.01")
async def paid_item(request: HttpRequest, pk: int) -> JsonResponse:
    return JsonResponse({"pk": pk, "payer": get_payer()})


@paid("$0.01")
async def paid_slug(request: HttpRequest, slug: str) -> JsonResponse:
    return JsonResponse({"slug": slug})


@sign_in_required()
async def note(request: HttpRequest, pk: int) -> JsonResponse:
    return JsonResponse({"pk": pk, "payer": get_payer()})


@paid("$0.01")
async def slow(request: HttpRequest) -> JsonResponse:
    await asyncio.sleep(5)
    return JsonResponse({"ok": True})


urlpatterns = [
    path("items/<int:pk>/", paid_item),
    re_path(r"^rx/(?P<slug>[a-z0-9-]+)/$", paid_slug),
    path("notes/<int:pk>/", note),
    path("slow/", slow),
    *options_urlpatterns,
]
HERE = {**OPTIONS_SETTINGS, "ROOT_URLCONF": __name__}


@pytest.fixture
def base() -> Iterator[str]:
    with options_server(AIXYZ_METRICS=METRICS, **HERE) as url:
        yield url


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (sample, labels) in samples if sample == name]


async def required_of(plain: httpx.AsyncClient, url: str, **kwargs: Any) -> PaymentRequired:
    unpaid = await plain.request(kwargs.pop("method", "GET"), url, **kwargs)
    assert unpaid.status_code == 402, unpaid.text
    required = decode_payment_required_header(unpaid.headers["PAYMENT-REQUIRED"])
    assert isinstance(required, PaymentRequired)
    return required


def raw_header(data: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(data).encode()).decode("ascii")


# -- /metrics: who may read it ---------------------------------------------------------------


async def test_bearer_token_edge_cases_let_only_the_exact_token_in(base: str) -> None:
    """Held: prefix/suffix, other schemes, latin-1 bytes, doubled and huge headers stay out."""
    refused: dict[str, Any] = {
        "prefix": {"Authorization": f"Bearer {TOKEN[:-1]}"},
        "suffix": {"Authorization": f"Bearer {TOKEN}x"},
        "empty": {"Authorization": "Bearer "},
        "scheme only": {"Authorization": "Bearer"},
        "token only": {"Authorization": TOKEN},
        "basic": {"Authorization": "Basic " + base64.b64encode(f"x:{TOKEN}".encode()).decode()},
        "latin-1 suffix": {"Authorization": f"Bearer {TOKEN}".encode() + b"\xe9"},
        "latin-1 only": {"Authorization": b"Bearer \xff\xfe\xfd" * 3},
        "nul": {"Authorization": f"Bearer {TOKEN}\x00".encode()},
        "doubled, wrong first": [("Authorization", "Bearer nope"), *BEARER.items()],
        "doubled, wrong second": [*BEARER.items(), ("Authorization", "Bearer nope")],
        "token in the query": None,
        "huge": {"Authorization": "Bearer " + "A" * 30_000},
    }
    answers: dict[str, httpx.Response] = {}
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        for name, headers in refused.items():
            try:
                if headers is None:
                    answers[name] = await plain.get("/metrics", params={"token": TOKEN})
                else:
                    answers[name] = await plain.get("/metrics", headers=headers)
            except (httpx.RemoteProtocolError, httpx.LocalProtocolError):  # not sendable as is
                continue
        lower = await plain.get("/metrics", headers={"Authorization": f"bearer {TOKEN}"})
        spaced = await plain.get("/metrics", headers={"Authorization": f"Bearer   {TOKEN}"})
        queried = await plain.get("/metrics", params={"a": "b"}, headers=BEARER)
        slash = await plain.get("/metrics/", headers=BEARER)
        head = await plain.head("/metrics", headers=BEARER)
        head_anonymous = await plain.head("/metrics")
        options = await plain.options("/metrics", headers=BEARER)
        delete = await plain.delete("/metrics", headers=BEARER)
    for name, answer in answers.items():
        assert answer.status_code in (400, 401, 431), (name, answer.status_code)
        assert "aixyz_" not in answer.text and "# TYPE" not in answer.text, name
        assert TOKEN not in answer.text, name
    # The auth scheme is case-insensitive (RFC 9110) and outer spaces are not the token's.
    assert lower.status_code == 200 and spaced.status_code == 200
    assert queried.status_code == 200
    assert slash.status_code == 404 and "aixyz_" not in slash.text
    assert head.status_code == 200 and head.content == b""
    assert head_anonymous.status_code == 401
    assert options.status_code == 405 and delete.status_code == 405
    assert queried.headers["Cache-Control"] == "no-store"


async def _session_cookie(user: Any) -> str:
    from django.test import Client

    def login() -> str:
        client = Client()
        client.force_login(user)
        return client.cookies["sessionid"].value

    return await sync_to_async(login)()


async def test_only_an_active_staff_user_reads_the_metrics() -> None:
    """Held: a superuser who is not staff, and staff deactivated after signing in, get 403."""
    from django.contrib.auth.models import User

    create = sync_to_async(User.objects.create_user)
    staff = await create("staff", password="pw-staff-1", is_staff=True)
    boss = await create("boss", password="pw-boss-1", is_superuser=True, is_staff=False)
    leaver = await create("leaver", password="pw-leaver-1", is_staff=True)
    cookies = {user.username: await _session_cookie(user) for user in (staff, boss, leaver)}
    leaver.is_active = False
    await sync_to_async(leaver.save)()
    with options_server(AIXYZ_METRICS={"STAFF": True}, MIDDLEWARE=ADMIN_MIDDLEWARE, **HERE) as url:
        answers = {}
        for name, cookie in cookies.items():
            async with httpx.AsyncClient(base_url=url, timeout=30) as web:
                web.cookies.set("sessionid", cookie)
                answers[name] = await web.get("/metrics")
        async with httpx.AsyncClient(base_url=url, timeout=30) as plain:
            forged = await plain.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answers["staff"].status_code == 200
    assert answers["boss"].status_code == 403 and "aixyz_" not in answers["boss"].text
    assert answers["leaver"].status_code == 403
    assert forged.status_code == 403  # no TOKEN configured: no bearer token works


# -- labels: only the server's configuration names series ------------------------------------


def _assert_labels_are_the_servers(samples: Samples, routes: set[str], before: Samples) -> None:
    """Every series that appeared since ``before`` is named by the server's configuration
    (series of other tests in this process were there before)."""
    samples = {key: value for key, value in samples.items() if key not in before}
    for labels in series(samples, CALLS):
        assert labels["scheme"] in SCHEMES, labels
        assert labels["network"] in NETWORKS, labels
        assert labels["resource"] in routes, labels
    for labels in series(samples, REVENUE):
        assert labels["asset"] in USDC, labels
    for name in (ASKED, "aixyz_replays_refused_total", "aixyz_sign_ins_total"):
        for labels in series(samples, name):
            assert labels["resource"] in routes, (name, labels)
    for name in ("aixyz_payment_verify_seconds_count", "aixyz_payment_settle_seconds_count"):
        for labels in series(samples, name):
            assert labels["scheme"] in SCHEMES and labels["network"] in NETWORKS, labels


ROUTES = {
    "/items/<int:pk>/",
    "/rx/(?P<slug>[a-z0-9-]+)/$",
    "/notes/<int:pk>/",
    "/slow/",
    "/two-networks/",
    "/metered/",
    "/metered-header/",
    "/metered-stream/",
    "/metered-sign-in/",
    "tool:opt_metered",
    "tool:opt_two_networks",
    "agent",
}


async def test_crafted_paths_and_payment_terms_make_no_new_series(base: str) -> None:
    """Held: paths under a converter or a regex, and a payment whose ``accepted`` names an
    arbitrary scheme, network and asset (quotes, newlines, backslashes), label nothing new."""
    hostile = 'x"} 1\n# TYPE evil counter\nevil_total{a="\\'
    account = Account.create()
    before = await scrape(base)
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        for index in range(5):
            await plain.get(f"/items/{index}/")
            await plain.get(f"/rx/slug-{index}/", params={"q": hostile})
            await plain.get(f"/items/{index}/", headers={"PAYMENT-SIGNATURE": "%%%"})
        required = await required_of(plain, "/items/1/")
        signed = await signer(account).create_payment_payload(required)
        data = json.loads(signed.model_dump_json(by_alias=True, exclude_none=True))
        for field in ("scheme", "network", "asset", "payTo", "amount"):
            crafted = json.loads(json.dumps(data))
            crafted["accepted"][field] = hostile + field
            answer = await plain.get(
                "/items/7/", headers={"PAYMENT-SIGNATURE": raw_header(crafted)}
            )
            assert answer.status_code == 402, (field, answer.text)
        # Unknown tools on HTTP: nothing paid, nothing named.
        for index in range(3):
            await plain.post(f"/tools/unknown-{index}", json={})
            await plain.post("/tools/" + quote(hostile, safe=""), json={})
    text = (await httpx.AsyncClient(base_url=base).get("/metrics", headers=BEARER)).text
    assert "evil" not in text and "unknown-" not in text
    samples = parse(text)  # still a valid exposition
    _assert_labels_are_the_servers(samples, ROUTES, before)
    item = {"resource": "/items/<int:pk>/"}
    assert samples[(ASKED, frozenset({**item, "reason": "missing"}.items()))] >= 5
    assert samples[(ASKED, frozenset({**item, "reason": "unreadable"}.items()))] >= 5
    refused = {**item, "scheme": "", "network": "", "outcome": "refused"}
    assert samples[(CALLS, frozenset(refused.items()))] >= 5


async def test_unknown_tools_over_the_websocket_name_no_series(base: str) -> None:
    """Held: a tool name the client invents is never a label."""
    import websockets

    before = await scrape(base)
    async with websockets.connect(base.replace("http", "ws") + "/ws/tools/") as ws:
        for index in range(3):
            message = {"id": index, "tool": f"ghost-{index}", "arguments": {}, "payment": {}}
            await ws.send(json.dumps(message))
            await asyncio.wait_for(ws.recv(), 30)
    text = (await httpx.AsyncClient(base_url=base).get("/metrics", headers=BEARER)).text
    assert "ghost-" not in text
    _assert_labels_are_the_servers(parse(text), ROUTES, before)


async def test_sign_ins_on_a_converter_route_are_one_series_not_one_per_path(base: str) -> None:
    from aixyz_sessions.testing.paying import sign_in_header

    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        for index in range(4):
            account = Account.create()  # free to make, one per request if need be
            url = f"/notes/{index}/"
            asked = await plain.get(url)
            assert asked.status_code == 402, asked.text
            header = await sign_in_header(account, asked.headers["PAYMENT-REQUIRED"], base + url)
            answer = await plain.get(url, headers={"SIGN-IN-WITH-X": header})
            assert answer.status_code == 200, answer.text
    samples = await scrape(base)
    resources = {labels["resource"] for labels in series(samples, "aixyz_sign_ins_total")}
    assert resources == {"/notes/<int:pk>/"}


# -- spans: the verified payer only, and no secrets ------------------------------------------


async def test_a_forged_payer_is_refused_and_named_on_no_span(base: str) -> None:
    """Held: ``authorization.from`` set to a victim (signed by the attacker) is refused, and
    neither the victim nor the signer shows up as ``x402.payer``."""
    attacker, victim = Account.create(), Account.create()
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        required = await required_of(plain, "/items/3/")
        signed = await signer(attacker).create_payment_payload(required)
        data = json.loads(signed.model_dump_json(by_alias=True, exclude_none=True))
        data["payload"]["authorization"]["from"] = victim.address
        with recorded_spans() as exporter:
            answer = await plain.get("/items/3/", headers={"PAYMENT-SIGNATURE": raw_header(data)})
            spans = list(exporter.get_finished_spans())
    assert answer.status_code == 402, answer.text
    assert get_local_facilitator().ledger.transfers == [] or all(
        t.payer.lower() != victim.address.lower() for t in get_local_facilitator().ledger.transfers
    )
    (call,) = named(spans, "x402.call ")
    assert call.attributes is not None
    assert call.attributes["x402.outcome"] == "refused"
    assert "x402.payer" not in call.attributes
    for opened in spans:
        for value in (opened.attributes or {}).values():
            assert victim.address.lower() not in str(value).lower(), opened.name


async def test_no_span_carries_the_payment_its_signature_or_the_arguments(base: str) -> None:
    """Held: a paid tool call's spans carry terms and the verified payer, never the payment
    header, its signature, the tool's arguments or what it wrote."""
    secret = "s3cr3t-argument-value-4242"
    account = Account.create()
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        body = {"key": secret, "amount": "$0.001"}
        required = await required_of(plain, "/tools/opt_metered", method="POST", json=body)
        payload = await signer(account).create_payment_payload(required)
        header = encode_payment_signature_header(payload)
        with recorded_spans() as exporter:
            answer = await plain.post(
                "/tools/opt_metered", json=body, headers={"PAYMENT-SIGNATURE": header}
            )
            spans = list(exporter.get_finished_spans())
    assert answer.status_code == 200, answer.text
    signature = str(payload.payload.get("signature", "")).lower().removeprefix("0x")
    assert len(signature) > 20
    assert spans
    for opened in spans:
        for key, value in (opened.attributes or {}).items():
            text = str(value).lower()
            assert secret not in text, (opened.name, key)
            assert signature not in text, (opened.name, key)
            assert header.lower()[:40] not in text, (opened.name, key)
    (call,) = named(spans, "x402.call ")
    assert call.attributes is not None and call.attributes["x402.payer"] == account.address


# -- counting under attack -------------------------------------------------------------------


async def test_a_replayed_and_a_concurrently_duplicated_payment_counts_once(base: str) -> None:
    """Held: one signed payment sent eight times at once, then again, settles once."""
    account = Account.create()
    before = await scrape(base)
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        required = await required_of(plain, "/items/5/")
        payload = await signer(account).create_payment_payload(required)
        header = {"PAYMENT-SIGNATURE": encode_payment_signature_header(payload)}
        answers = await asyncio.gather(*(plain.get("/items/5/", headers=header) for _ in range(8)))
        later = await plain.get("/items/6/", headers=header)
    after = await scrape(base)
    codes = sorted(a.status_code for a in answers)
    assert codes.count(200) == 1, codes
    assert later.status_code == 402
    item = {"resource": "/items/<int:pk>/", "scheme": "exact", "network": NETWORK}
    assert delta(before, after, CALLS, **item, outcome="settled") == 1
    assert moved(before, after, REVENUE) == [10000]
    ledger = get_local_facilitator().ledger
    assert [t.amount for t in ledger.transfers if t.payer.lower() == account.address.lower()] == [
        10000
    ]


async def test_a_retry_with_a_payment_identifier_is_kept_not_counted_as_revenue(
    base: str,
) -> None:
    """Held: the kept answer of a retry is ``kept``; revenue moves once."""
    from x402.extensions.payment_identifier import (
        append_payment_identifier_to_extensions,
        generate_payment_id,
    )

    account = Account.create()
    before = await scrape(base)
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        required = await required_of(plain, "/metered/", method="POST", json={})
        extensions: dict[str, Any] = dict(required.extensions or {})
        append_payment_identifier_to_extensions(extensions, generate_payment_id())
        payload = await signer(account).create_payment_payload(required, extensions=extensions)
        header = {"PAYMENT-SIGNATURE": encode_payment_signature_header(payload)}
        body = {"charge": "$0.002", "key": "once"}
        answers = [await plain.post("/metered/", json=body, headers=header) for _ in range(4)]
    after = await scrape(base)
    assert [a.status_code for a in answers] == [200] * 4
    metered = {"resource": "/metered/", "scheme": "upto", "network": NETWORK}
    assert delta(before, after, CALLS, **metered, outcome="settled") == 1
    assert delta(before, after, CALLS, **metered, outcome="kept") == 0  # no terms on a kept one
    kept = {"resource": "/metered/", "scheme": "", "network": "", "outcome": "kept"}
    assert delta(before, after, CALLS, **kept) == 3
    assert moved(before, after, REVENUE) == [2000]


async def test_a_settlement_that_fails_moves_no_revenue(base: str) -> None:
    """Held: the facilitator refusing to settle is ``settle_failed``, with nothing earned."""
    account = Account.create()
    before = await scrape(base)
    ledger = get_local_facilitator().ledger
    ledger.fail_settlements = "insufficient funds (on purpose)"
    try:
        async with x402HttpxClient(signer(account), base_url=base, timeout=30) as http:
            answer = await http.get("/items/9/")
    finally:
        ledger.fail_settlements = None
    after = await scrape(base)
    assert answer.status_code == 402, answer.text
    item = {"resource": "/items/<int:pk>/", "scheme": "exact", "network": NETWORK}
    assert delta(before, after, CALLS, **item, outcome="settle_failed") == 1
    assert delta(before, after, CALLS, **item, outcome="settled") == 0
    assert moved(before, after, REVENUE) == []


async def test_a_client_that_hangs_up_mid_call_is_failed_and_unpaid(base: str) -> None:
    """Held: the view is cancelled, the call counted ``failed``, nothing settled."""
    account = Account.create()
    before = await scrape(base)
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        required = await required_of(plain, "/slow/")
        payload = await signer(account).create_payment_payload(required)
        header = {"PAYMENT-SIGNATURE": encode_payment_signature_header(payload)}
    async with httpx.AsyncClient(base_url=base, timeout=0.5) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            await impatient.get("/slow/", headers=header)
    terms = {"resource": "/slow/", "scheme": "exact", "network": NETWORK}
    for _ in range(100):
        after = await scrape(base)
        if delta(before, after, CALLS, **terms, outcome="failed"):
            break
        await asyncio.sleep(0.1)
    assert delta(before, after, CALLS, **terms, outcome="failed") == 1
    assert delta(before, after, CALLS, **terms, outcome="settled") == 0
    assert moved(before, after, REVENUE) == []
    await asyncio.sleep(5.5)  # were the view not cancelled, it would have settled by now
    last = await scrape(base)
    assert delta(before, last, CALLS, **terms, outcome="settled") == 0
    assert all(
        t.payer.lower() != account.address.lower() for t in get_local_facilitator().ledger.transfers
    )


# -- failure of the metrics themselves -------------------------------------------------------


async def test_a_channel_storage_outage_is_up_0_not_a_failed_scrape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Held."""
    from aixyz_sessions.metrics import channel_gauges

    class Down:
        def list(self) -> list[Any]:
            raise ConnectionError("storage down")

    with options_server(with_channels("database"), AIXYZ_METRICS=METRICS, **HERE) as url:
        monkeypatch.setattr(channel_gauges, "_storage", lambda: Down())
        samples = await scrape(url)
    assert samples[("aixyz_channel_storage_up", frozenset())] == 0
    assert "aixyz_channels_open" not in {name for name, _ in samples}


class _Broken:
    """A metric whose every write fails, as multiprocess files do on a full or vanished disk."""

    def labels(self, *args: Any) -> Any:
        raise OSError(28, "No space left on device")


@pytest.mark.parametrize("which", ["paid_calls", "every metric"])
async def test_a_broken_metrics_registry_never_breaks_a_paid_call(
    base: str, monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    from aixyz_sessions.metrics import instruments as module

    real = module.instruments()
    assert real is not None
    broken = {
        f.name: _Broken() if which in (f.name, "every metric") else getattr(real, f.name)
        for f in dataclasses.fields(real)
    }
    monkeypatch.setattr(module, "_instruments", module.Instruments(**broken))
    account = Account.create()
    async with x402HttpxClient(signer(account), base_url=base, timeout=30) as http:
        answer = await http.get("/items/1/")
    charged = [
        t.amount
        for t in get_local_facilitator().ledger.transfers
        if t.payer.lower() == account.address.lower()
    ]
    assert answer.status_code == 200, (answer.status_code, "charged:", charged)


async def test_prometheus_client_missing_with_the_setting_on_never_breaks_a_paid_call(
    base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held: uninstalled under a running server (a started server refuses to start without
    it: E301), paid calls go on; ``/metrics`` says 503 with the fix."""
    from aixyz_sessions.metrics import instruments as module

    account = Account.create()
    async with x402HttpxClient(signer(account), base_url=base, timeout=30) as http:
        first = await http.get("/items/1/")  # the runtime is up, its checks passed
        monkeypatch.setattr(module, "_instruments", None)
        for name in list(sys.modules):
            if name == "prometheus_client" or name.startswith("prometheus_client."):
                monkeypatch.setitem(sys.modules, name, None)
        answer = await http.get("/items/2/")
    assert first.status_code == 200, first.text
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        page = await plain.get("/metrics", headers=BEARER)
    assert answer.status_code == 200, answer.text
    assert page.status_code == 503 and "prometheus-client" in page.text


# -- the entrypoint --------------------------------------------------------------------------


def _entrypoint(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], str, str]:
    """Run the real entrypoint with ``python`` and ``rm`` replaced by scripts that only log
    their arguments: what it would remove, what it would start."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    rm_log, python_log = tmp_path / "rm.log", tmp_path / "python.log"
    for name, log in (("rm", rm_log), ("python", python_log)):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done >> {log}\n')
        script.chmod(0o755)
    environment = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
        **env,
    }
    done = subprocess.run(
        [str(ENTRYPOINT)], env=environment, capture_output=True, text=True, timeout=30
    )
    read = lambda log: log.read_text() if log.exists() else ""  # noqa: E731
    return done, read(rm_log), read(python_log)


def test_an_empty_multiproc_dir_falls_back_and_hostile_env_is_not_a_shell(tmp_path: Path) -> None:
    """Held: "" is the default under TMPDIR; a BIND_HOST with shell syntax is one argument."""
    hostile = "0.0.0.0; touch pwned $(touch pwned2)"
    done, removed, started = _entrypoint(tmp_path, PROMETHEUS_MULTIPROC_DIR="", BIND_HOST=hostile)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "aixyz-metrics").is_dir() and removed == ""
    assert hostile in started.splitlines()
    assert not (ROOT / "pwned").exists() and not (ROOT / "pwned2").exists()


def test_the_entrypoint_removes_only_an_earlier_runs_metric_files(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    stale = [metrics / "counter_12.db", metrics / "histogram_13.db"]
    for old in stale:
        old.write_bytes(b"old")
    done, removed, started = _entrypoint(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(metrics))
    assert done.returncode == 0, done.stderr
    assert sorted(removed.splitlines()) == sorted(["-f", *map(str, stale)])
    assert "uvicorn" in started.splitlines()


@pytest.mark.parametrize("where", ["/", "relative/dir", "{home}", "{home}/app"])
def test_the_entrypoint_never_wipes_a_directory_that_is_not_its_own(
    tmp_path: Path, where: str
) -> None:
    """Was a BUG (foot-gun): it ran ``rm -rf`` on whatever the variable named. Now a
    directory that holds anything but prometheus-client's files is refused, untouched."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "manage.py").write_text("# the application\n")
    directory = where.format(home=tmp_path)
    done, removed, started = _entrypoint(tmp_path, PROMETHEUS_MULTIPROC_DIR=directory)
    assert done.returncode == 2, done.stderr
    assert "PROMETHEUS_MULTIPROC_DIR" in done.stderr
    assert removed == "" and "uvicorn" not in started.splitlines()
    assert (tmp_path / "app" / "manage.py").is_file()

"""``/healthz`` and ``/readyz`` (``aixyz_sessions.health``), served by uvicorn on loopback.

Every server here routes the URLconf of docs/deployment.md's example, so the
example is what runs.
"""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from django.test import AsyncClient, override_settings

from aixyz_sessions.health import views
from aixyz_sessions.replay import ReplayGuard
from aixyz_sessions.stores.memory import InMemorySessionStore
from tests.docs_examples import block
from tests.fault_facilitator import FaultyFacilitator
from tests.payments_helpers import LOCAL, NETWORK, PAY_TO, free_port, serve
from tests.services import need_redis
from tests.settings import LOOPBACK_HOSTS

# A real server in another thread: the database tables must be committed to be seen.
pytestmark = pytest.mark.django_db(transaction=True)

URLCONF = "tests_health_docs_urls"
DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1
LIVE_REDIS = "redis://127.0.0.1:6379/13"
DB_STORE = "aixyz_sessions.stores.db.DatabaseSessionStore"
READY = {"store": "ok", "replay_guard": "ok", "facilitator": "ok", "channels": "off"}


def redis_store(url: str) -> dict[str, Any]:
    return {"BACKEND": "aixyz_sessions.stores.redis.RedisSessionStore", "OPTIONS": {"url": url}}


class CountingStore(InMemorySessionStore):
    """The in-memory store, counting the reads made of it."""

    reads = 0

    async def get(self, payer: str, key: str) -> str | None:
        CountingStore.reads += 1
        return await super().get(payer, key)


@contextmanager
def docs_urlconf() -> Iterator[str]:
    """docs/deployment.md's ``urls.py`` example as a URLconf module."""
    namespace: dict[str, Any] = {"__name__": URLCONF}
    exec(block("docs/deployment.md", "# urls.py: the health endpoints"), namespace)
    module = types.ModuleType(URLCONF)
    module.urlpatterns = namespace["urlpatterns"]  # type: ignore[attr-defined]
    sys.modules[URLCONF] = module
    try:
        yield URLCONF
    finally:
        del sys.modules[URLCONF]


@contextmanager
def health_server(**settings: Any) -> Iterator[httpx.Client]:
    """The health URLs under this app's ASGI application; a client at their base URL.

    ``settings`` override the test settings (no ``AIXYZ_X402``: payments off).
    """
    from aixyz_sessions.asgi import get_asgi_application

    with (
        docs_urlconf() as urls,
        override_settings(ROOT_URLCONF=urls, ALLOWED_HOSTS=LOOPBACK_HOSTS, **settings),
        serve(get_asgi_application()) as base,
        httpx.Client(base_url=base, timeout=30) as client,
    ):
        yield client


def ready(response: httpx.Response, checks: dict[str, str]) -> None:
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "checks": checks}
    assert response.headers["Cache-Control"] == "no-store"
    assert "Retry-After" not in response.headers


def not_ready(response: httpx.Response) -> dict[str, str]:
    """The checks of a 503 (its headers checked)."""
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["status"] == "not_ready"
    assert response.headers["Retry-After"] == "5"
    assert response.headers["Cache-Control"] == "no-store"
    checks: dict[str, str] = body["checks"]
    return checks


# -- /healthz -------------------------------------------------------------------------------


def test_healthz_answers_ok_without_touching_the_store() -> None:
    CountingStore.reads = 0
    with health_server(AIXYZ_SESSION_STORE="tests.test_health.CountingStore") as client:
        for _ in range(3):
            response = client.get("/healthz")
            assert response.status_code == 200
            assert response.json() == {"status": "ok"}
            assert response.headers["Cache-Control"] == "no-store"
        assert CountingStore.reads == 0
        ready(client.get("/readyz"), {**READY, "replay_guard": "off", "facilitator": "off"})
        assert CountingStore.reads == 1  # readyz reads it: one probe


def test_healthz_is_200_while_the_store_is_down() -> None:
    with health_server(AIXYZ_SESSION_STORE=redis_store(DEAD_REDIS)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert not_ready(client.get("/readyz"))["store"] == "session_store_unavailable"


# -- /readyz: ready -------------------------------------------------------------------------


def test_readyz_with_the_memory_store_and_the_local_facilitator() -> None:
    with health_server(AIXYZ_X402=LOCAL) as client:
        ready(client.get("/readyz"), READY)
        head = client.head("/readyz")
        assert head.status_code == 200 and head.content == b""


def test_readyz_with_the_database_store() -> None:
    with health_server(AIXYZ_SESSION_STORE=DB_STORE, AIXYZ_X402=LOCAL) as client:
        ready(client.get("/readyz"), READY)


def test_readyz_with_redis() -> None:
    need_redis()
    with health_server(AIXYZ_SESSION_STORE=redis_store(LIVE_REDIS), AIXYZ_X402=LOCAL) as client:
        ready(client.get("/readyz"), READY)


def test_readyz_without_payments_checks_the_store_only() -> None:
    with health_server() as client:
        ready(
            client.get("/readyz"),
            {"store": "ok", "replay_guard": "off", "facilitator": "off", "channels": "off"},
        )


# -- /readyz: not ready ---------------------------------------------------------------------


def test_readyz_is_503_when_redis_is_down() -> None:
    with health_server(AIXYZ_SESSION_STORE=redis_store(DEAD_REDIS), AIXYZ_X402=LOCAL) as client:
        checks = not_ready(client.get("/readyz"))
    # The replay guard lives in the same (dead) Redis; the local facilitator answers.
    assert checks == {
        "store": "session_store_unavailable",
        "replay_guard": "session_store_unavailable",
        "facilitator": "ok",
        "channels": "off",
    }


def test_readyz_is_503_when_the_facilitator_is_unreachable() -> None:
    dead = {
        "PAY_TO": PAY_TO,
        "NETWORK": NETWORK,
        "FACILITATOR_URL": f"http://127.0.0.1:{free_port()}",
    }
    with health_server(AIXYZ_X402=dead) as client:
        checks = not_ready(client.get("/readyz"))
        assert client.get("/healthz").status_code == 200
    assert checks == {**READY, "facilitator": "facilitator_unavailable"}


def test_a_recent_facilitator_answer_is_reused_and_an_outage_seen_once_stale(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    facilitator = FaultyFacilitator()
    with serve(facilitator) as url:
        x402 = {"PAY_TO": PAY_TO, "NETWORK": NETWORK, "FACILITATOR_URL": url}
        with health_server(AIXYZ_X402=x402) as client:
            for _ in range(3):
                ready(client.get("/readyz"), READY)
            # The runtime's initialization asked once; the next probes reused its answer.
            assert facilitator.calls["/supported"] == 1
            facilitator.faults["/supported"] = ("status", 500)
            monkeypatch.setattr(views, "FACILITATOR_FRESH_FOR", 0.0)  # the answer is stale
            checks = not_ready(client.get("/readyz"))
            assert checks == {**READY, "facilitator": "facilitator_unavailable"}
            assert facilitator.calls["/supported"] == 2
            facilitator.faults.clear()  # back: the next probe sees it
            ready(client.get("/readyz"), READY)
            assert facilitator.calls["/supported"] == 3


# -- /readyz: payment channels --------------------------------------------------------------


def test_readyz_checks_the_channel_storage_when_channels_are_on() -> None:
    channels = {**LOCAL, "BATCH_SETTLEMENT": {"STORAGE": "database"}}
    with health_server(AIXYZ_X402=channels) as client:
        ready(client.get("/readyz"), {**READY, "channels": "ok"})


def test_readyz_is_503_when_the_channel_storage_is_down() -> None:
    channels = {**LOCAL, "BATCH_SETTLEMENT": {"STORAGE": DEAD_REDIS}}
    with health_server(AIXYZ_X402=channels) as client:
        checks = not_ready(client.get("/readyz"))
    assert checks == {**READY, "channels": "session_store_unavailable"}


# -- methods, secrets -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_other_methods_are_405(path: str) -> None:
    with health_server(AIXYZ_X402=LOCAL) as client:
        for method in ("POST", "PUT", "DELETE"):
            response = client.request(method, path)
            assert response.status_code == 405, (method, response.text)
            assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}


SECRET_REDIS = "redis://probe-user:s3cret-pass@127.0.0.1:1/0"


def test_a_503_names_no_infrastructure_without_debug() -> None:
    with health_server(AIXYZ_SESSION_STORE=redis_store(SECRET_REDIS), AIXYZ_X402=LOCAL) as client:
        response = client.get("/readyz")
    checks = not_ready(response)
    assert checks["store"] == "session_store_unavailable"
    for secret in ("s3cret", "probe-user", "127.0.0.1", ":1"):
        assert secret not in response.text


def test_with_debug_a_503_says_what_the_backend_said() -> None:
    with health_server(
        AIXYZ_SESSION_STORE=redis_store(SECRET_REDIS), AIXYZ_X402=LOCAL, DEBUG=True
    ) as client:
        checks = not_ready(client.get("/readyz"))
    code, _, detail = checks["store"].partition(": ")
    assert code == "session_store_unavailable"
    assert "Connection refused" in detail and "127.0.0.1:1" in detail
    assert "s3cret" not in detail and "probe-user" not in detail  # the store masks its URL


class ClaimsOnlyGuard(ReplayGuard):
    """A guard written before records existed: claims only (``recall`` not implemented)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def claim(self, payer: str, nonce: str, valid_before: int) -> bool:
        self.calls.append(("claim", nonce))
        return True

    async def release(self, payer: str, nonce: str) -> None:
        self.calls.append(("release", nonce))


async def test_a_claims_only_guard_is_probed_by_a_claim_given_back() -> None:
    guard = ClaimsOnlyGuard()
    await views._read_guard(guard)
    (claim, nonce), (release, released) = guard.calls
    assert (claim, release) == ("claim", "release") and released == nonce
    assert nonce.startswith("readyz-")


# -- the demo -------------------------------------------------------------------------------


async def test_the_demo_serves_both(demo_urls: None) -> None:
    client = AsyncClient()
    healthz = await client.get("/healthz")
    assert (healthz.status_code, json.loads(healthz.content)) == (200, {"status": "ok"})
    readyz = await client.get("/readyz")
    assert readyz.status_code == 200, readyz.content
    assert json.loads(readyz.content) == {"status": "ready", "checks": READY}

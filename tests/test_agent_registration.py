"""The ERC-8004 registration file: served, printed by the command, checked, and its settings.

``/.well-known/agent-registration.json`` is read with Django's async test
client and from a real server (uvicorn, this app's ASGI application, whose
advertised ``/mcp`` is then reached with the official MCP client).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from io import StringIO
from typing import Any

import httpx
import pytest
from django.core.management import CommandError, call_command
from django.test import AsyncClient, override_settings
from mcp.types import LATEST_PROTOCOL_VERSION

from aixyz_sessions.agent.checks import check_agent_settings
from aixyz_sessions.agent.registration import (
    A2A_VERSION,
    REGISTRATION_TYPE,
    registration_problems,
)
from aixyz_sessions.checks import served
from aixyz_sessions.payments.runtime import reset_runtime
from tests import mcp_helpers
from tests.agent_app import AGENT
from tests.docs_examples import block
from tests.payments_helpers import LOCAL, MIDDLEWARE, serve
from tests.settings import LOOPBACK_HOSTS

REGISTRY = "eip155:8453:0x8004A169FB4a3325136EB29fA0ceB6D2e539a432"
EXTRAS = {
    "IMAGE": "https://agent.example.com/agent.png",
    "REGISTRATIONS": [{"agentId": 22, "agentRegistry": REGISTRY}],
    "SUPPORTED_TRUST": ["reputation", "tee-attestation"],
}
ORIGIN = "https://agent.example.com"
URL = "/.well-known/agent-registration.json"


def agent_settings(**overrides: Any) -> Any:
    """The agent's URLs (tests.agent_app) paid over the local facilitator; ``overrides`` win."""
    values: dict[str, Any] = {
        "MIDDLEWARE": MIDDLEWARE,
        "ROOT_URLCONF": "tests.agent_app",
        "AIXYZ_X402": LOCAL,
        "AIXYZ_AGENT": {**AGENT, **EXTRAS},
        **overrides,
    }
    return override_settings(**values)


@pytest.fixture
def tools() -> Iterator[None]:
    """The example tools registered: what /mcp serves."""
    mcp_helpers.register_examples()
    try:
        yield
    finally:
        mcp_helpers.unregister_examples()


@pytest.fixture
def no_asgi_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a process that never built aixyz_sessions.asgi (other tests here do build it)."""
    monkeypatch.setattr(served, "_ours_built", False)


def services(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in data["services"]}


# The served file


@pytest.mark.django_db
async def test_the_served_file_names_the_agent_its_card_and_its_trust(
    no_asgi_built: None,
) -> None:
    with agent_settings():
        response = await AsyncClient().get(URL)
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "public, max-age=300"
    data = response.json()
    assert registration_problems(data) == []
    assert data["type"] == REGISTRATION_TYPE
    assert (data["name"], data["description"], data["version"]) == (
        "Test Agent",
        "Invokes the example tools.",
        "2.0.0",
    )
    assert data["image"] == EXTRAS["IMAGE"]
    assert data["x402Support"] is True and data["active"] is True
    assert data["registrations"] == EXTRAS["REGISTRATIONS"]
    assert data["supportedTrust"] == EXTRAS["SUPPORTED_TRUST"]
    # The test client's origin; no ASGI app of ours routes /mcp here, so no MCP service.
    assert services(data) == {
        "web": {"name": "web", "endpoint": "http://testserver"},
        "A2A": {
            "name": "A2A",
            "endpoint": "http://testserver/.well-known/agent-card.json",
            "version": A2A_VERSION,
        },
    }


@pytest.mark.django_db
async def test_origin_names_the_urls_and_mcp_is_listed_when_served(
    tools: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(served, "_ours_built", True)
    with agent_settings(AIXYZ_X402={**LOCAL, "ORIGIN": ORIGIN + "/"}):
        data = (await AsyncClient().get(URL)).json()
    assert registration_problems(data) == []
    assert services(data)["web"]["endpoint"] == ORIGIN
    assert services(data)["A2A"]["endpoint"] == f"{ORIGIN}/.well-known/agent-card.json"
    assert services(data)["MCP"] == {
        "name": "MCP",
        "endpoint": f"{ORIGIN}/mcp",
        "version": LATEST_PROTOCOL_VERSION,
    }


@pytest.mark.django_db
async def test_without_x402_or_the_optional_keys(no_asgi_built: None, tools: None) -> None:
    """Tools alone do not make /mcp: Django's own ASGI handler answers it 404."""
    with agent_settings(AIXYZ_AGENT=AGENT, AIXYZ_X402=None):
        data = (await AsyncClient().get(URL)).json()
    assert registration_problems(data) == []
    assert data["x402Support"] is False and "MCP" not in services(data)
    assert not {"image", "registrations", "supportedTrust"} & set(data)


@pytest.mark.django_db
async def test_only_get_and_head() -> None:
    with agent_settings():
        assert (await AsyncClient().head(URL)).status_code == 200
        posted = await AsyncClient().post(URL, {}, "application/json")
    assert posted.status_code == 405


@pytest.mark.django_db
async def test_a_setting_that_cannot_work_is_a_500() -> None:
    with agent_settings(AIXYZ_AGENT={**AGENT, "SUPPORTED_TRUST": ["vibes"]}):
        response = await AsyncClient().get(URL)
    assert response.status_code == 500
    assert response.json()["error"] == "server_misconfigured"


@pytest.mark.django_db(transaction=True)
async def test_a_real_server_advertises_an_mcp_url_that_answers(tools: None) -> None:
    from aixyz_sessions.asgi import get_asgi_application

    with agent_settings(ALLOWED_HOSTS=LOOPBACK_HOSTS):
        reset_runtime()
        try:
            with serve(get_asgi_application(), lifespan="on") as base:
                async with httpx.AsyncClient(timeout=10) as client:
                    data = (await client.get(base + URL)).json()
                    card = await client.get(services(data)["A2A"]["endpoint"])
                mcp = services(data)["MCP"]["endpoint"]
                assert mcp == f"{base}/mcp"
                async with mcp_helpers.connect(mcp.removesuffix("/mcp")) as session:
                    listed = await session.list_tools()
        finally:
            reset_runtime()
    assert registration_problems(data) == []
    assert card.status_code == 200 and card.json()["name"] == "Test Agent"
    assert mcp_helpers.PUT in {t.name for t in listed.tools}


# The command


def command(*args: str) -> str:
    out = StringIO()
    call_command("aixyz_agent_registration", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
async def test_the_command_prints_the_served_file(no_asgi_built: None) -> None:
    from asgiref.sync import sync_to_async

    with agent_settings(AIXYZ_X402={**LOCAL, "ORIGIN": ORIGIN}):
        served_file = (await AsyncClient().get(URL)).json()
        printed = await sync_to_async(command)()
        with_url = await sync_to_async(command)("--url", ORIGIN + "/")
    assert printed == json.dumps(served_file, indent=2) + "\n"
    assert json.loads(with_url) == served_file
    assert registration_problems(json.loads(printed)) == []


def test_the_command_needs_an_agent_and_an_origin() -> None:
    with agent_settings(AIXYZ_AGENT=None), pytest.raises(CommandError, match="not set"):
        command("--url", ORIGIN)
    with agent_settings(), pytest.raises(CommandError, match="--url"):
        command()  # AIXYZ_X402 has no ORIGIN
    with agent_settings(), pytest.raises(CommandError, match="origin like"):
        command("--url", "agent.example.com/path")
    with agent_settings(ROOT_URLCONF="tests.urls"), pytest.raises(CommandError, match="routed"):
        command("--url", ORIGIN)


def test_the_command_fails_on_a_setting_that_cannot_work() -> None:
    bad = {**AGENT, "REGISTRATIONS": [{"agentId": -1, "agentRegistry": REGISTRY}]}
    with agent_settings(AIXYZ_AGENT=bad), pytest.raises(CommandError, match="E209"):
        command("--url", ORIGIN)


def test_the_command_fails_on_an_invalid_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the file fails on is listed (here a build gone wrong: no type)."""
    from aixyz_sessions.management.commands import aixyz_agent_registration as module

    real = module.registration_for

    def broken(*args: Any) -> dict[str, Any]:
        data = real(*args)
        del data["type"]
        data["active"] = "yes"
        return data

    monkeypatch.setattr(module, "registration_for", broken)
    with agent_settings(), pytest.raises(CommandError) as failed:
        command("--url", ORIGIN)
    assert "- type must be" in str(failed.value) and "- active must be" in str(failed.value)


# The validator


def valid() -> dict[str, Any]:
    return {
        "type": REGISTRATION_TYPE,
        "name": "Agent",
        "description": "d",
        "image": "ipfs://bafy/agent.png",
        "services": [
            {"name": "A2A", "endpoint": f"{ORIGIN}/.well-known/agent-card.json", "version": "0.3.0"}
        ],
        "x402Support": True,
        "active": True,
        "registrations": [{"agentId": 0, "agentRegistry": REGISTRY}],
        "supportedTrust": ["reputation", "crypto-economic", "tee-attestation"],
    }


def test_a_valid_file_has_no_problems() -> None:
    assert registration_problems(valid()) == []
    minimal = {"type": REGISTRATION_TYPE, "name": "Agent"}
    assert registration_problems(minimal) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"type": REGISTRATION_TYPE + "x"}, "type must be"),
        ({"type": None}, "type must be"),
        ({"name": ""}, "name must be"),
        ({"name": 7}, "name must be"),
        ({"description": ["d"]}, "description must be"),
        ({"image": "agent.png"}, "image must be"),
        ({"image": 1}, "image must be"),
        ({"services": {"A2A": "x"}}, "services must be a list"),
        ({"services": ["A2A"]}, "services[0] must be an object"),
        ({"services": [{"name": "A2A"}]}, "services[0].endpoint"),
        ({"services": [{"name": 1, "endpoint": "x"}]}, "services[0].name"),
        ({"services": [{"name": "MCP", "endpoint": "x", "version": 1}]}, "services[0].version"),
        ({"x402Support": "true"}, "x402Support must be"),
        ({"active": 1}, "active must be"),
        ({"registrations": {}}, "registrations must be a list"),
        ({"registrations": ["22"]}, "registrations[0] must be an object"),
        ({"registrations": [{"agentId": -1, "agentRegistry": REGISTRY}]}, "agentId"),
        ({"registrations": [{"agentId": True, "agentRegistry": REGISTRY}]}, "agentId"),
        ({"registrations": [{"agentId": "22", "agentRegistry": REGISTRY}]}, "agentId"),
        ({"registrations": [{"agentId": 1, "agentRegistry": "eip155:8453:0x1234"}]}, "agentReg"),
        (
            {"registrations": [{"agentId": 1, "agentRegistry": "eip155:base:" + "0x" + "a" * 40}]},
            "agentReg",
        ),
        ({"registrations": [{"agentId": 1, "agentRegistry": REGISTRY, "x": 1}]}, "unknown keys"),
        ({"supportedTrust": ["reputation", "vibes"]}, "unknown trust models"),
        ({"supportedTrust": "reputation"}, "supportedTrust must be a list"),
    ],
)
def test_each_problem_is_caught(change: dict[str, Any], problem: str) -> None:
    problems = registration_problems({**valid(), **change})
    assert len(problems) == 1 and problem in problems[0], problems


def test_not_an_object() -> None:
    assert registration_problems([valid()]) == ["a registration file is a JSON object, got list"]


# The settings check (E209)


def ids(value: Any) -> list[str]:
    with override_settings(AIXYZ_AGENT=value):
        return [message.id or "" for message in check_agent_settings()]


def test_the_optional_keys_pass_the_check() -> None:
    assert ids({**AGENT, **EXTRAS}) == []


@pytest.mark.parametrize(
    "extra",
    [
        {"IMAGE": "agent.png"},
        {"IMAGE": "ftp://example.com/agent.png"},
        {"IMAGE": 3},
        {"REGISTRATIONS": {"agentId": 22, "agentRegistry": REGISTRY}},
        {"REGISTRATIONS": [{"agentId": -1, "agentRegistry": REGISTRY}]},
        {"REGISTRATIONS": [{"agentId": 22, "agentRegistry": "eip155:8453:0xnothex"}]},
        {"REGISTRATIONS": [{"agentId": 22}]},
        {"SUPPORTED_TRUST": ["reputation", "trust-me"]},
        {"SUPPORTED_TRUST": "reputation"},
    ],
)
def test_e209_fires_for_a_registration_key_that_cannot_work(extra: dict[str, Any]) -> None:
    assert ids({**AGENT, **extra}) == ["aixyz_sessions.E209"]


# The docs


def test_the_docs_settings_pass_the_check_and_make_a_valid_file() -> None:
    namespace: dict[str, Any] = {}
    exec(
        block("docs/agent.md", "# settings.py: ERC-8004 registration keys of the agent"), namespace
    )
    value = namespace["AIXYZ_AGENT"]
    assert ids(value) == []
    with agent_settings(AIXYZ_AGENT=value):
        data = json.loads(command("--url", ORIGIN))
    assert registration_problems(data) == []
    assert data["registrations"][0]["agentId"] == 22

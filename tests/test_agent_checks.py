"""``AIXYZ_AGENT`` is checked at ``manage.py check`` time, with an id and a hint per mistake."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings

from aixyz_sessions.agent.checks import check_agent_settings
from aixyz_sessions.agent.conf import AgentConfigError, get_agent_config
from tests.agent_app import AGENT


def ids(value: Any) -> list[str]:
    with override_settings(AIXYZ_AGENT=value):
        return [message.id or "" for message in check_agent_settings()]


@pytest.mark.django_db
async def test_configured_skills_are_the_cards_and_messages_are_priced() -> None:
    """SKILLS (dicts) make a config that still prices messages (hashing it once broke /agent)."""
    from django.test import AsyncClient

    from tests.payments_helpers import LOCAL, MIDDLEWARE

    skills = [{"id": "s", "name": "S", "description": "d", "tags": ["t"], "examples": ["e"]}]
    with override_settings(
        AIXYZ_AGENT={**AGENT, "SKILLS": skills, "AGENT": "tests.test_agent_loop.loop_agent"},
        AIXYZ_X402=LOCAL,
        MIDDLEWARE=MIDDLEWARE,
        ROOT_URLCONF="tests.agent_app",
    ):
        card = (await AsyncClient().get("/.well-known/agent-card.json")).json()
        text = {"role": "user", "messageId": "m1", "parts": [{"kind": "text", "text": "hi"}]}
        body = {"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": text}}
        asked = await AsyncClient().post("/agent", body, "application/json")
    assert [s["id"] for s in card["skills"]] == ["s"] and card["skills"][0]["examples"] == ["e"]
    assert asked.status_code == 402


def test_a_good_setting_passes_and_parses() -> None:
    assert ids(AGENT) == []
    with override_settings(AIXYZ_AGENT={**AGENT, "PRICE": "0.002"}):
        config = get_agent_config()
    assert config.name == "Test Agent" and config.price == "$0.002" and config.skills is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("agent", "aixyz_sessions.E200"),
        ({**AGENT, "COLOUR": "red"}, "aixyz_sessions.E201"),
        ({**AGENT, "NAME": ""}, "aixyz_sessions.E202"),
        ({k: v for k, v in AGENT.items() if k != "DESCRIPTION"}, "aixyz_sessions.E202"),
        ({**AGENT, "VERSION": 2}, "aixyz_sessions.E202"),
        ({**AGENT, "PRICE": "free"}, "aixyz_sessions.E203"),
        ({**AGENT, "PRICE": "$0"}, "aixyz_sessions.E203"),
        ({k: v for k, v in AGENT.items() if k != "PRICE"}, "aixyz_sessions.E203"),
        ({**AGENT, "AGENT": 7}, "aixyz_sessions.E204"),
        ({**AGENT, "AGENT": "no.such.module.answer"}, "aixyz_sessions.E206"),
        ({**AGENT, "AGENT": "tests.agent_app.AGENT"}, "aixyz_sessions.E206"),  # not callable
        ({**AGENT, "SKILLS": "all"}, "aixyz_sessions.E205"),
        ({**AGENT, "SKILLS": [{"id": "x"}]}, "aixyz_sessions.E205"),
        ({**AGENT, "SKILLS": [{"id": "x", "name": "X", "tags": [1]}]}, "aixyz_sessions.E205"),
    ],
)
def test_each_mistake_has_its_id(value: Any, expected: str) -> None:
    assert expected in ids(value)


def test_a_wrong_setting_raises_with_the_reason() -> None:
    with override_settings(AIXYZ_AGENT={**AGENT, "PRICE": "free"}):
        with pytest.raises(AgentConfigError, match="PRICE"):
            get_agent_config()


@pytest.mark.django_db
async def test_the_endpoints_say_what_is_wrong_instead_of_a_traceback() -> None:
    from django.test import AsyncClient

    from tests.payments_helpers import LOCAL, MIDDLEWARE

    with override_settings(
        AIXYZ_AGENT={**AGENT, "PRICE": "free"},
        AIXYZ_X402=LOCAL,
        MIDDLEWARE=MIDDLEWARE,
        ROOT_URLCONF="tests.agent_app",
    ):
        card = await AsyncClient().get("/.well-known/agent-card.json")
        sent = await AsyncClient().post("/agent", {"jsonrpc": "2.0"}, "application/json")
    for response in (card, sent):
        assert response.status_code == 500
        assert response.json()["error"] == "server_misconfigured"
        assert "PRICE" in response.json()["message"]


def test_no_setting_no_check_unless_the_agent_is_routed() -> None:
    with override_settings():
        from django.conf import settings

        if hasattr(settings, "AIXYZ_AGENT"):
            del settings.AIXYZ_AGENT
        assert check_agent_settings() == []  # the test URLconf routes no agent
        with override_settings(ROOT_URLCONF="tests.agent_app"):
            assert [m.id for m in check_agent_settings()] == ["aixyz_sessions.E200"]


@pytest.mark.django_db
async def test_an_oversize_or_nested_body_is_a_json_rpc_error_not_a_500() -> None:
    from django.test import AsyncClient

    from tests.payments_helpers import LOCAL, MIDDLEWARE

    with override_settings(
        AIXYZ_AGENT=AGENT,
        AIXYZ_X402=LOCAL,
        MIDDLEWARE=MIDDLEWARE,
        ROOT_URLCONF="tests.agent_app",
        DATA_UPLOAD_MAX_MEMORY_SIZE=1000,
    ):
        big = await AsyncClient().post("/agent", "x" * 5000, "application/json")
        deep = await AsyncClient().post("/agent", "[" * 100_000, "application/json")
        batch = await AsyncClient().post(
            "/agent", '[{"jsonrpc": "2.0", "method": "message/send"}]', "application/json"
        )
    for response in (big, deep, batch):
        assert response.status_code == 400, response.content
        assert response.json()["error"]["code"] == -32700


def test_a_text_turn_priced_below_its_tools_is_a_warning() -> None:
    """One model turn may call put ($0.01) max_tool_calls times: PRICE should cover that."""
    from aixyz_sessions.agent.checks import check_agent_settings
    from tests import mcp_helpers

    mcp_helpers.register_examples()
    try:
        loop = "tests.test_agent_loop.loop_agent"  # offers put and get; 20 tool calls a turn
        found = {}
        for price in ("$0.001", "$0.2"):
            with override_settings(AIXYZ_AGENT={**AGENT, "AGENT": loop, "PRICE": price}):
                found[price] = [m for m in check_agent_settings() if m.id == "aixyz_sessions.W207"]
        (warning,) = found["$0.001"]
        assert f"{mcp_helpers.PUT} ($0.01 a call) up to 20 times" in warning.msg
        assert "0.20" in (warning.hint or "")
        assert found["$0.2"] == []
    finally:
        mcp_helpers.unregister_examples()

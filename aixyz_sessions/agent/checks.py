"""System checks for ``AIXYZ_AGENT`` (ids ``aixyz_sessions.E2xx``/``W2xx``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.utils.module_loading import import_string

from ..payments.checks import add_price_source
from ..payments.decorators import PaidSpec
from .conf import SETTING, agent_config_errors, price_key

__all__ = ["check_agent_settings"]


def _agent_price() -> list[tuple[str, PaidSpec]]:
    """The agent's text-turn price, for ``W106``/``E112`` (the payments app's price checks)."""
    from .conf import get_agent_config

    agent = getattr(settings, SETTING, None)
    if not isinstance(agent, dict) or agent_config_errors(agent):
        return []
    return [(f"{SETTING}[{price_key(agent)!r}]", get_agent_config().spec)]


add_price_source(_agent_price)


@checks.register("aixyz_sessions")
def check_agent_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Every problem with ``AIXYZ_AGENT``, and an ``AGENT`` path that does not import."""
    value = getattr(settings, SETTING, None)
    if value is None:
        return _routed_without_setting()
    messages: list[checks.CheckMessage] = [
        checks.Error(error.msg, hint=error.hint, id=error.id)
        for error in agent_config_errors(value)
    ]
    agent = value.get("AGENT") if isinstance(value, dict) else None
    if not messages and agent is not None:
        try:
            target = import_string(agent)
        except ImportError as exc:
            messages.append(
                checks.Error(
                    f"{SETTING}['AGENT'] = {agent!r} cannot be imported: {exc}",
                    hint="Name an async callable (text, context) -> str.",
                    id="aixyz_sessions.E206",
                )
            )
        else:
            if not callable(target):
                messages.append(
                    checks.Error(
                        f"{SETTING}['AGENT'] = {agent!r} is not callable",
                        hint="Name an async callable (text, context) -> str.",
                        id="aixyz_sessions.E206",
                    )
                )
            messages.extend(_turn_price(price_key(value), target))
    return messages


def _turn_price(key: str, agent: object) -> list[checks.CheckMessage]:
    """W207: a text turn's price below what the tools its model may call cost elsewhere.

    A tool costs its own price on every transport; a ``ToolLoopAgent`` turn
    may call tools ``max_tool_calls`` times for one turn's price. The turn's
    most (a fixed price, or the maximum of a metered one) is compared with
    the priciest offered tool's most, in dollars.
    """
    from .conf import get_agent_config
    from .loop import ToolLoopAgent

    if not isinstance(agent, ToolLoopAgent):
        return []
    turn = get_agent_config().spec.most_dollars()
    priced = [
        (t.name, most)
        for t in agent.tools().values()
        if t.paid_spec is not None and t.paid and (most := t.paid_spec.most_dollars()) is not None
    ]
    if turn is None or not priced:
        return []
    name, most_value = max(priced, key=lambda item: item[1])
    needed = most_value * agent.max_tool_calls
    if turn >= needed:
        return []
    return [
        checks.Warning(
            f"{SETTING}[{key!r}] charges at most ${turn} per text turn, but the model may call "
            f"{name} (${most_value} a call) up to {agent.max_tool_calls} times in one turn: "
            "the tools cost less through the agent than on every other transport",
            hint=f"Raise {key} to at least ${needed:f}, lower the agent's max_tool_calls, "
            "or offer it fewer tools.",
            id="aixyz_sessions.W207",
        )
    ]


def _routed_without_setting() -> list[checks.CheckMessage]:
    """E200 when the agent's URLs are routed but ``AIXYZ_AGENT`` is not set."""
    from django.urls import Resolver404, resolve

    from .views import agent

    try:
        routed = resolve("/agent").func is agent
    except Resolver404:
        routed = False
    except Exception:  # a broken URLconf is for Django's own checks to report
        return []
    if not routed:
        return []
    return [
        checks.Error(
            f"aixyz_sessions.agent.urls is routed but {SETTING} is not set",
            hint=f'{SETTING} = {{"NAME": "...", "DESCRIPTION": "...", "PRICE": "$0.001"}}',
            id="aixyz_sessions.E200",
        )
    ]

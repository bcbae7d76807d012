"""System checks for ``AIXYZ_AGENT`` (ids ``aixyz_sessions.E2xx``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.utils.module_loading import import_string

from .conf import SETTING, agent_config_errors

__all__ = ["check_agent_settings"]


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
    return messages


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

"""Reading ``AIXYZ_AGENT``: the agent an A2A client talks to, and what a message costs.

::

    AIXYZ_AGENT = {
        "NAME": "Session Content Agent",          # required
        "DESCRIPTION": "Stores and reads content in your session.",   # required
        "VERSION": "1.0.0",                       # default "1.0.0"
        "PRICE": "$0.001",                        # per message (x402); required
        "AGENT": "myapp.agents.answer",           # optional: text messages go here
        "SKILLS": [{"id": "...", "name": "...", "description": "..."}],  # optional
    }

Without ``SKILLS`` the card lists one skill per registered tool. A value
that cannot work raises :class:`AgentConfigError`, which the system check
reports with an id (``aixyz_sessions.E2xx``) and a hint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from ..conf import SettingError
from ..lazy import Lazy, lazy_setting

__all__ = ["SETTING", "AgentConfig", "AgentConfigError", "agent_config_errors", "get_agent_config"]

SETTING = "AIXYZ_AGENT"
KNOWN_KEYS = frozenset({"NAME", "DESCRIPTION", "VERSION", "PRICE", "AGENT", "SKILLS"})
SKILL_KEYS = frozenset({"id", "name", "description", "tags", "examples"})


class AgentConfigError(SettingError):
    """``AIXYZ_AGENT`` cannot work."""


@dataclass(frozen=True)
class AgentConfig:
    """The parsed ``AIXYZ_AGENT`` setting."""

    name: str
    description: str
    price: str
    version: str = "1.0.0"
    agent: str | None = None
    skills: tuple[dict[str, Any], ...] | None = field(default=None)


def _error(msg: str, id: str, hint: str) -> AgentConfigError:
    return AgentConfigError(msg, id=id, hint=hint)


def agent_config_errors(value: object) -> list[AgentConfigError]:
    """Every problem with a value of ``AIXYZ_AGENT`` (empty when it can work)."""
    if not isinstance(value, dict):
        return [
            _error(
                f"{SETTING} must be a dict, got {type(value).__name__}",
                "aixyz_sessions.E200",
                f'{SETTING} = {{"NAME": "...", "DESCRIPTION": "...", "PRICE": "$0.001"}}',
            )
        ]
    errors: list[AgentConfigError] = []
    unknown = sorted(str(k) for k in set(value) - KNOWN_KEYS)
    if unknown:
        errors.append(
            _error(
                f"{SETTING} has unknown keys: {', '.join(unknown)}",
                "aixyz_sessions.E201",
                f"Known keys: {', '.join(sorted(KNOWN_KEYS))}.",
            )
        )
    for key in ("NAME", "DESCRIPTION", "VERSION"):
        text = value.get(key, "1.0.0" if key == "VERSION" else None)
        if not isinstance(text, str) or not text.strip():
            errors.append(
                _error(
                    f"{SETTING}[{key!r}] must be a non-empty str, got {text!r}",
                    "aixyz_sessions.E202",
                    "The agent card shows it to every A2A client.",
                )
            )
    errors.extend(_price_errors(value.get("PRICE")))
    agent = value.get("AGENT")
    if agent is not None and (not isinstance(agent, str) or "." not in agent):
        errors.append(
            _error(
                f"{SETTING}['AGENT'] must be a dotted path, got {agent!r}",
                "aixyz_sessions.E204",
                "Name an async callable (text, context) -> str, or a ToolLoopAgent instance.",
            )
        )
    errors.extend(_skill_errors(value.get("SKILLS")))
    return errors


def _price_errors(price: object) -> list[AgentConfigError]:
    from ..payments.decorators import check_price

    try:
        check_price(price, what=f"{SETTING}['PRICE']")
    except (TypeError, ValueError) as exc:
        return [
            _error(
                str(exc),
                "aixyz_sessions.E203",
                "What one A2A message costs, in dollars: '$0.001'.",
            )
        ]
    return []


def _skill_errors(skills: object) -> list[AgentConfigError]:
    if skills is None:
        return []
    hint = 'A list of {"id", "name", "description"} dicts (optional "tags", "examples").'
    if not isinstance(skills, list | tuple):
        return [_error(f"{SETTING}['SKILLS'] must be a list", "aixyz_sessions.E205", hint)]
    for skill in skills:
        if (
            not isinstance(skill, dict)
            or set(skill) - SKILL_KEYS
            or not all(isinstance(skill.get(k), str) and skill[k] for k in ("id", "name"))
            or not isinstance(skill.get("description", ""), str)
            or not all(isinstance(t, str) for t in skill.get("tags", []))
            or not all(isinstance(e, str) for e in skill.get("examples", []))
        ):
            return [
                _error(
                    f"{SETTING}['SKILLS'] has a bad skill: {skill!r}", "aixyz_sessions.E205", hint
                )
            ]
    return []


def parse_agent_config(value: object) -> AgentConfig:
    """Validate a value of ``AIXYZ_AGENT``; raise :class:`AgentConfigError`."""
    errors = agent_config_errors(value)
    if errors:
        raise errors[0]
    assert isinstance(value, dict)
    from ..payments.decorators import check_price

    skills = value.get("SKILLS")
    return AgentConfig(
        name=value["NAME"].strip(),
        description=value["DESCRIPTION"].strip(),
        price=check_price(value["PRICE"]),
        version=str(value.get("VERSION", "1.0.0")).strip(),
        agent=value.get("AGENT"),
        skills=None if skills is None else tuple(dict(s) for s in skills),
    )


_config: Lazy[AgentConfig] = lazy_setting(
    SETTING, build=lambda: parse_agent_config(getattr(settings, SETTING, None))
)


def get_agent_config() -> AgentConfig:
    """The process's parsed ``AIXYZ_AGENT`` (``AgentConfigError`` if it is missing or wrong)."""
    return _config.get()

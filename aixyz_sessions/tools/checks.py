"""System check: two tools may not share a name."""

from __future__ import annotations

from typing import Any

from django.core import checks

from .registry import registry


@checks.register("aixyz_sessions")
def check_tool_names(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    return [
        checks.Error(
            f"two different functions are registered as the tool {name!r}",
            hint="Give one of them another name: @tool(name=...).",
            id="aixyz_sessions.E030",
        )
        for name in registry.duplicates
    ]

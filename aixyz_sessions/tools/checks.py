"""System checks of the tool registry: two tools may not share a name; their prices.

``W106`` (a price above ``MAX_PRICE``) is the payments app's check; the
registry adds its tools' prices to what it looks at.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.core import checks

from ..payments.checks import add_price_source
from ..payments.decorators import PaidSpec
from .registry import registry


def _tool_prices() -> Iterator[tuple[str, PaidSpec]]:
    for item in registry:
        if item.paid_spec is not None and item.paid_spec.charges:
            yield f"the tool {item.name!r}", item.paid_spec


add_price_source(_tool_prices)


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


@checks.register("aixyz_sessions", checks.Tags.urls)
def check_tools_routed_without_tools(
    app_configs: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """W031: the tool URLs are routed but no tool is registered (its app is not installed)."""
    from django.urls import get_resolver

    from ..payments.checks import routed_views
    from .views import call, tool_list

    if len(registry):
        return []
    try:
        patterns = get_resolver().url_patterns
    except Exception:  # Django's own URL checks report a broken URLconf
        return []
    if not any(view in (call, tool_list) for view in routed_views(patterns)):
        return []
    return [
        checks.Warning(
            "the tool URLs are routed but no tool is registered: every call will answer "
            "404 unknown_tool",
            hint="Tools are found in the tools.py of each app in INSTALLED_APPS: add the app "
            "that holds your @tool functions to INSTALLED_APPS (or import their module).",
            id="aixyz_sessions.W031",
        )
    ]

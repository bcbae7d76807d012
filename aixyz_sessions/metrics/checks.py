"""System checks of ``AIXYZ_METRICS`` (``aixyz_sessions.E300``, ``E301``)."""

from __future__ import annotations

import importlib.util
from typing import Any

from django.conf import settings
from django.core import checks

from .conf import SETTING, MetricsConfigError, parse

__all__ = ["check_metrics_settings"]


@checks.register("aixyz_sessions")
def check_metrics_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    try:
        config = parse(getattr(settings, SETTING, None))
    except MetricsConfigError as error:
        return [checks.Error(error.msg, hint=error.hint, id=error.id)]
    if config is not None and importlib.util.find_spec("prometheus_client") is None:
        return [
            checks.Error(
                f"{SETTING} is set but prometheus-client is not installed",
                hint='pip install "aixyz-sessions[prometheus]"',
                id="aixyz_sessions.E301",
            )
        ]
    return []

"""System checks of ``AIXYZ_METRICS`` (ids ``aixyz_sessions.E30x`` / ``W30x``).

``E300`` the setting cannot work; ``E301`` prometheus-client is missing;
``E302`` ``PROMETHEUS_MULTIPROC_DIR`` names no writable directory (every
metric write would fail); ``W300`` several worker processes without it (each
scrape would show one worker's figures); ``W301`` nothing routes ``/metrics``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import Any

from django.conf import settings
from django.core import checks

from .conf import SETTING, MetricsConfigError, parse

__all__ = ["check_metrics_routed", "check_metrics_settings", "warn_if_metrics_split"]

logger = logging.getLogger("aixyz_sessions.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@checks.register("aixyz_sessions")
def check_metrics_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    try:
        config = parse(getattr(settings, SETTING, None))
    except MetricsConfigError as error:
        return [checks.Error(error.msg, hint=error.hint, id=error.id)]
    if config is None:
        return []
    if importlib.util.find_spec("prometheus_client") is None:
        return [
            checks.Error(
                f"{SETTING} is set but prometheus-client is not installed",
                hint='pip install "aixyz-sessions[prometheus]"',
                id="aixyz_sessions.E301",
            )
        ]
    folder = os.environ.get(MULTIPROC_ENV)
    if folder is not None:
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
            return [
                checks.Error(
                    f"{MULTIPROC_ENV} is {folder!r}, which is not a directory this process "
                    "can write: every metric would fail to record",
                    hint=f"Create it (empty) before the server starts, or unset {MULTIPROC_ENV} "
                    "for a single process (see docs/operations.md, several worker processes).",
                    id="aixyz_sessions.E302",
                )
            ]
        return []
    from ..checks.workers import worker_count

    workers = worker_count()
    if workers is not None and workers > 1:
        return [
            checks.Warning(
                f"metrics are counted in the memory of each of the {workers} workers: every "
                "scrape of /metrics shows one worker's figures, and counters seem to jump back",
                hint=f"Set {MULTIPROC_ENV} to an empty directory shared by the workers before "
                "they start (see docs/operations.md, several worker processes).",
                id="aixyz_sessions.W300",
            )
        ]
    return []


@checks.register("aixyz_sessions", checks.Tags.urls)
def check_metrics_routed(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W301: metrics are counted but no URL serves them."""
    try:
        if parse(getattr(settings, SETTING, None)) is None:
            return []
    except MetricsConfigError:
        return []  # E300 says so
    from django.urls import get_resolver

    from ..payments.checks import routed_views
    from .views import metrics

    try:
        patterns = get_resolver().url_patterns
    except Exception:  # a broken URLconf is Django's own check to report
        return []
    if any(view is metrics for view in routed_views(patterns)):
        return []
    return [
        checks.Warning(
            f"{SETTING} is set but no URL routes to the metrics view: /metrics answers 404",
            hint='Add path("", include("aixyz_sessions.metrics.urls")) to your urlpatterns.',
            id="aixyz_sessions.W301",
        )
    ]


def warn_if_metrics_split() -> None:
    """W300 as one log line at start: servers do not run ``manage.py check``."""
    for message in check_metrics_settings():
        if message.id == "aixyz_sessions.W300":
            logger.warning("aixyz_sessions: %s (%s) [W300]", message.msg, message.hint)

"""Django app config: registers the system checks."""

from __future__ import annotations

from django.apps import AppConfig


class AixyzSessionsConfig(AppConfig):
    name = "aixyz_sessions"
    verbose_name = "aixyz sessions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the checks

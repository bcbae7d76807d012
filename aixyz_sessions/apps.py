"""Django app config: registers the system checks and discovers ``tools`` modules."""

from __future__ import annotations

from django.apps import AppConfig


class AixyzSessionsConfig(AppConfig):
    name = "aixyz_sessions"
    verbose_name = "aixyz sessions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.utils.module_loading import autodiscover_modules

        from . import checks  # registers the checks
        from .agent import checks as agent_checks  # noqa: F401 - registers the checks
        from .metrics import checks as metric_checks  # noqa: F401 - registers the checks
        from .payments import checks as payment_checks  # noqa: F401 - registers the checks
        from .tools import checks as tool_checks  # noqa: F401 - registers the checks

        # Like the admin: every installed app's ``tools`` module registers its tools.
        autodiscover_modules("tools")
        checks.served.warn_if_served_without_our_asgi()

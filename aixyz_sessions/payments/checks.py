"""System checks for ``AIXYZ_X402`` (ids ``aixyz_sessions.E1xx`` / ``W1xx``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from .conf import SETTING, config_errors

__all__ = ["check_x402_settings"]

MIDDLEWARE_PATH = "aixyz_sessions.payments.middleware.X402Middleware"


@checks.register("aixyz_sessions")
def check_x402_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Every problem with ``AIXYZ_X402``; a warning for the local facilitator outside DEBUG."""
    value = getattr(settings, SETTING, None)
    if value is None:
        if MIDDLEWARE_PATH in getattr(settings, "MIDDLEWARE", []):
            return [
                checks.Error(
                    f"X402Middleware is installed but {SETTING} is not set",
                    hint=f'{SETTING} = {{"PAY_TO": "0x...", "NETWORK": "eip155:84532", '
                    '"FACILITATOR_URL": "https://x402.org/facilitator"}',
                    id="aixyz_sessions.E100",
                )
            ]
        return []
    messages: list[checks.CheckMessage] = [
        checks.Error(error.msg, hint=error.hint, id=error.id) for error in config_errors(value)
    ]
    if not messages and value.get("FACILITATOR") == "local" and not settings.DEBUG:
        messages.append(
            checks.Warning(
                f"{SETTING} uses the LocalFacilitator with DEBUG = False: payments are "
                "verified but no money moves",
                hint='Point "FACILITATOR_URL" at a real x402 facilitator in production.',
                id="aixyz_sessions.W101",
            )
        )
    return messages

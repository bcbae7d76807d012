"""System checks for ``AIXYZ_X402`` (ids ``aixyz_sessions.E1xx`` / ``W1xx``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

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


@checks.register("aixyz_sessions", deploy=True)
def check_x402_deployment(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``check --deploy``: a facilitator reached over plain HTTP.

    Verification answers decide who the payer is and whether a call was paid:
    over plain HTTP anyone on the path can forge them.
    """
    value = getattr(settings, SETTING, None)
    if not isinstance(value, dict) or config_errors(value):
        return []  # nothing to add to the errors above
    url = value.get("FACILITATOR_URL")
    if isinstance(url, str) and urlsplit(url).scheme == "http":
        return [
            checks.Warning(
                f"{SETTING}['FACILITATOR_URL'] is plain http: {url}",
                hint="A real facilitator is reached over https://; its answers say who paid, "
                "and over plain HTTP they can be forged on the way.",
                id="aixyz_sessions.W102",
            )
        ]
    return []

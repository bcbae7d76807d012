"""The checks in front of the WebSocket ``/ws/tools/``: ``Host`` and ``Origin``.

Channels checks neither the ``Host`` (Django checks every HTTP request's)
nor, without a validator, the ``Origin``; a client without ``Origin`` (an
agent, not a browser) is let in, since every paid message carries its own
signed payment.
"""

from __future__ import annotations

import logging
from typing import Any

from .protocol import ASGIApp, Receive, Scope, Send

__all__ = ["host_checked", "origin_checked"]

logger = logging.getLogger("aixyz_sessions.asgi")


def host_checked(app: ASGIApp) -> ASGIApp:
    """Refuse a WebSocket whose ``Host`` Django would refuse (``ALLOWED_HOSTS``).

    A scope that names no host at all (no ``Host`` header, no server address)
    does not come from a network client: an in-process test communicator.
    """
    from channels.security.websocket import WebsocketDenier  # type: ignore[import-untyped]

    from ..hosts import host_error, scope_host

    async def checked(scope: Scope, receive: Receive, send: Send) -> None:
        problem = host_error(scope) if scope_host(scope) else None
        if problem is not None:
            logger.warning("WebSocket refused: %s", problem)
            await WebsocketDenier()(scope, receive, send)
            return
        await app(scope, receive, send)

    return checked


def origin_checked(app: ASGIApp) -> ASGIApp:
    """``AllowedHostsOriginValidator`` that also admits connections without ``Origin``."""
    from channels.security.websocket import OriginValidator
    from django.conf import settings

    class AgentOriginValidator(OriginValidator):  # type: ignore[misc]
        def valid_origin(self, parsed_origin: Any) -> bool:
            return parsed_origin is None or bool(super().valid_origin(parsed_origin))

    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = ["localhost", "127.0.0.1", "[::1]"]
    validator: ASGIApp = AgentOriginValidator(app, allowed)
    return validator

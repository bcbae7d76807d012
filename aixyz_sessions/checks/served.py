"""Say so when the project is served without this app's ASGI application.

``/mcp`` and the WebSocket ``/ws/tools/`` are routed by
:func:`aixyz_sessions.asgi.get_asgi_application`. The ``asgi.py`` that
``django-admin startproject`` writes calls Django's own
``get_asgi_application()``, which serves every HTTP view (paid views, HTTP
tools, the agent) but answers ``/mcp`` with a 404 and refuses WebSockets
(``ValueError: Django can only handle ASGI/HTTP connections``). Nothing
fails at start, so the tools just seem missing. When tools are registered:

* ``manage.py check`` warns (``aixyz_sessions.W014``) when the project's ASGI
  module (``ASGI_APPLICATION``'s, else the ``asgi`` module beside
  ``ROOT_URLCONF``) does not use ``aixyz_sessions.asgi``;
* the server logs one warning at start when Django's handler is built by
  anything but :func:`aixyz_sessions.asgi.get_asgi_application`.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from typing import Any

from django.conf import settings
from django.core import checks

__all__ = [
    "check_asgi_module",
    "mark_our_asgi_built",
    "mcp_served",
    "ours_served",
    "warn_if_served_without_our_asgi",
]

logger = logging.getLogger("aixyz_sessions")

_WHY = (
    "/mcp answers 404 and /ws/tools/ refuses WebSocket connections: Django's own ASGI "
    "handler serves HTTP views only"
)
_HINT = (
    "In asgi.py: `from aixyz_sessions.asgi import get_asgi_application; "
    "application = get_asgi_application()` (after setting DJANGO_SETTINGS_MODULE)."
)


def _tools_registered() -> bool:
    from ..tools.registry import registry

    return len(registry) > 0


#: Whether this process built :func:`aixyz_sessions.asgi.get_asgi_application`'s app.
_ours_built = False


def mark_our_asgi_built() -> None:
    """Record that this process serves ``aixyz_sessions.asgi`` (``/mcp`` and the
    WebSocket ``/ws/tools/`` are routed)."""
    global _ours_built
    _ours_built = True


def ours_served() -> bool:
    """Whether ``/mcp`` and ``/ws/tools/`` answer here: this process built this app's
    ASGI application, or the project's ASGI module uses it (as ``W014`` reads it, for a
    process such as ``manage.py`` that builds none). Under runserver, WSGI or Django's
    own ASGI handler nothing answers them, so nothing may send agents there."""
    return _ours_built or _asgi_source_uses_ours() is True


def mcp_served() -> bool:
    """Whether this server answers MCP at ``/mcp``, for what it advertises.

    The MCP app serves the registered tools, so none means nothing to
    advertise; and ``/mcp`` exists only under this app's ASGI application:
    built in this process (``uvicorn aixyz_sessions.asgi:application``), or
    named by the project's ASGI module (as ``W014`` reads it, for a process
    such as ``manage.py`` that builds none).
    """
    return _tools_registered() and ours_served()


def _asgi_source_uses_ours() -> bool | None:
    """Whether the project's ASGI module uses ``aixyz_sessions.asgi`` (``None``: no such file)."""
    name = _asgi_module()
    if name is None:
        return None
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    try:
        with open(spec.origin, encoding="utf-8") as source:
            text = source.read()
    except OSError:
        return None
    return "aixyz_sessions.asgi" in text


def _asgi_module() -> str | None:
    """The project's ASGI module name: ``ASGI_APPLICATION``'s, else beside ``ROOT_URLCONF``."""
    path = getattr(settings, "ASGI_APPLICATION", None)
    if isinstance(path, str) and "." in path:
        return path.rsplit(".", 1)[0]
    urlconf = getattr(settings, "ROOT_URLCONF", None)
    if isinstance(urlconf, str) and "." in urlconf:
        return urlconf.rsplit(".", 1)[0] + ".asgi"
    return None


@checks.register("aixyz_sessions")
def check_asgi_module(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W014: tools are registered, and the project's asgi.py does not use this app's."""
    if not _tools_registered() or _asgi_source_uses_ours() is not False:
        return []
    name = _asgi_module()
    spec = importlib.util.find_spec(name) if name else None
    where = spec.origin if spec is not None and spec.origin else name
    return [
        checks.Warning(
            f"{where} does not serve aixyz_sessions.asgi: {_WHY}",
            hint=_HINT,
            id="aixyz_sessions.W014",
        )
    ]


def warn_if_served_without_our_asgi() -> None:
    """At start (``AppConfig.ready``): one warning when Django's own handler is being built."""
    if not _tools_registered():
        return
    frame = sys._getframe(1)
    names = set()
    while frame is not None:
        names.add((frame.f_globals.get("__name__"), frame.f_code.co_name))
        frame = frame.f_back  # type: ignore[assignment]
    django_asgi = ("django.core.asgi", "get_asgi_application") in names
    ours = ("aixyz_sessions.asgi", "get_asgi_application") in names
    if django_asgi and not ours:
        logger.warning("aixyz_sessions: %s. %s", _WHY, _HINT)

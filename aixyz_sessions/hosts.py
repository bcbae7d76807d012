"""Which host names this server answers to: Django's ``ALLOWED_HOSTS``, for every transport.

Django checks the ``Host`` of each HTTP request it handles
(``HttpRequest.get_host``). The MCP endpoint and the WebSocket never pass
through that code, and a sign-in message names an origin that must be this
server's own, so the same rule lives here once:

* :func:`host_error` is what Django would say of an ASGI scope's host
  (``X-Forwarded-Host`` when ``USE_X_FORWARDED_HOST``, else ``Host``, else
  the server address); ``None`` when the host is allowed;
* :func:`owns_host` is stricter: a bare ``"*"`` in ``ALLOWED_HOSTS`` lets any
  name in, so it proves nothing about who the server is. A sign-in names an
  origin this server *owns*: ``AIXYZ_X402["ORIGIN"]``, else a host that
  ``ALLOWED_HOSTS`` names (see
  :func:`~aixyz_sessions.payments.paid_call.sign_in_origin`);
* :func:`request_origin` is the ``scheme://host[:port]`` a request reached,
  as every transport reports it to that decision: only when the port its
  ``Host`` names (or the scheme's default) is the port this server listens
  on. ``ALLOWED_HOSTS`` names hosts, not ports, and another service on
  another port of an allowed name (``localhost``, say) is not this server: a
  sign-in signed for it must not open a session here;
* :func:`public_origin` is the origin to put in the URLs this server
  advertises (the agent card, the ERC-8004 registration file):
  ``AIXYZ_X402["ORIGIN"]`` when set, else the request's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.http.request import split_domain_port, validate_host

if TYPE_CHECKING:
    from django.http import HttpRequest

__all__ = [
    "allowed_hosts",
    "any_host_allowed",
    "configured_origin",
    "host_error",
    "owns_host",
    "public_origin",
    "request_origin",
    "scope_host",
    "scope_origin",
]

#: What Django allows when ``DEBUG`` is on and ``ALLOWED_HOSTS`` is empty.
DEBUG_HOSTS = (".localhost", "127.0.0.1", "[::1]")
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def allowed_hosts() -> list[str]:
    """``ALLOWED_HOSTS``, or Django's own loopback names under ``DEBUG`` when it is empty."""
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = list(DEBUG_HOSTS)
    return allowed


def _headers(scope: Mapping[str, Any]) -> dict[str, str]:
    return {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in scope.get("headers", [])
    }


def scope_host(scope: Mapping[str, Any]) -> str:
    """An ASGI scope's host the way ``HttpRequest._get_raw_host`` finds it (port included)."""
    headers = _headers(scope)
    if settings.USE_X_FORWARDED_HOST and "x-forwarded-host" in headers:
        return headers["x-forwarded-host"]
    if "host" in headers:
        return headers["host"]
    server = scope.get("server")
    return f"{server[0]}:{server[1]}" if server else ""


def host_error(scope: Mapping[str, Any]) -> str | None:
    """Why Django would refuse this scope's host, or ``None`` if it is allowed."""
    host = scope_host(scope)
    domain, _ = split_domain_port(host)
    if domain and validate_host(domain, allowed_hosts()):
        return None
    return f"Invalid HTTP_HOST header: {host!r}. You may need to add {domain!r} to ALLOWED_HOSTS."


def owns_host(netloc: str) -> bool:
    """Whether ``host[:port]`` is a name ``ALLOWED_HOSTS`` gives this server (not just ``"*"``)."""
    domain, _ = split_domain_port(netloc)
    named = [host for host in allowed_hosts() if host != "*"]
    return bool(domain) and validate_host(domain, named)


def any_host_allowed() -> bool:
    """Whether ``ALLOWED_HOSTS`` holds the bare ``"*"`` (every ``Host`` header is taken)."""
    return "*" in allowed_hosts()


def request_origin(scheme: str, host: str, server_port: object) -> str | None:
    """``scheme://host[:port]`` a request reached, or ``None`` when its ``Host`` cannot be us.

    ``server_port`` is the port this server listens on (the ASGI scope's
    ``server``, Django's ``SERVER_PORT``; ``None`` when unknown, a Unix
    socket). A ``Host`` naming another port, or none while the server listens
    on a port that is not the scheme's default, reached something else (or
    came through a proxy: then ``AIXYZ_X402["ORIGIN"]`` says the public origin).
    """
    domain, port = split_domain_port(host)
    if not domain:
        return None
    text = str(server_port) if server_port is not None else ""
    listening = int(text) if text.isdigit() else None
    if listening is not None:
        named = int(port) if port.isdigit() else DEFAULT_PORTS.get(scheme)
        if named != listening:
            return None
    return f"{scheme}://{domain}:{port}" if port else f"{scheme}://{domain}"


def scope_origin(scope: Mapping[str, Any]) -> str | None:
    """:func:`request_origin` of an ASGI scope (HTTP or WebSocket; ``ws``/``wss`` as ``http(s)``).

    A scope that names no host at all (an in-process test communicator) is
    ``http://localhost``.
    """
    secure = scope.get("scheme") in ("https", "wss")
    server = scope.get("server")
    port = server[1] if isinstance(server, list | tuple) and len(server) > 1 else None
    return request_origin("https" if secure else "http", scope_host(scope) or "localhost", port)


def configured_origin() -> str | None:
    """``AIXYZ_X402["ORIGIN"]`` (no trailing ``/``), or ``None`` when it or ``AIXYZ_X402`` is unset.

    Raises the payments app's ``X402ConfigError`` when ``AIXYZ_X402`` is set but
    cannot work, as every paid request would.
    """
    if getattr(settings, "AIXYZ_X402", None) is None:
        return None  # an agent may be served without payments; its URLs still need an origin
    from .payments.conf import get_config

    return get_config().origin


def public_origin(request: HttpRequest) -> str:
    """The origin advertised URLs name: :func:`configured_origin`, else the request's own.

    Behind a proxy the request's own origin is the proxy's upstream one;
    ``ORIGIN`` says the public one.
    """
    return configured_origin() or f"{request.scheme}://{request.get_host()}"

"""Django's ``HttpRequest`` seen through the SDK's ``HTTPAdapter`` protocol."""

from __future__ import annotations

import re
from typing import Any

from django.http import HttpRequest

from .headers import PAYMENT_SIGNATURE, X_PAYMENT

__all__ = ["ROUTE_ATTR", "DjangoHTTPAdapter", "route_of", "route_template"]

#: The URL pattern the middleware resolved the request to (see :func:`route_of`).
ROUTE_ATTR = "_aixyz_x402_route"
_CONVERTER = re.compile(r"<(?:[^<>:]+:)?([A-Za-z_][A-Za-z0-9_]*)>")


def route_of(request: HttpRequest) -> str | None:
    """The request's URL pattern (``reports/<int:pk>/``): what metrics, spans and
    discovery call a paid view, never the path a client chose."""
    route = getattr(request, ROUTE_ATTR, None)
    if route is None:  # a paid view the URL did not reveal: Django resolved it since
        match = getattr(request, "resolver_match", None)
        route = None if match is None else match.route
    return route if isinstance(route, str) else None


def route_template(route: str | None) -> str | None:
    """A ``path()`` pattern as the x402 bazaar's ``routeTemplate`` (``/reports/:pk/``);
    ``None`` for a regular expression (``re_path``) or a route without parameters."""
    if not route or route.startswith("^") or route.endswith("$") or "(?" in route:
        return None
    template, count = _CONVERTER.subn(r":\1", route)
    if not count or "<" in template or ">" in template:
        return None
    return "/" + template.lstrip("/")


class DjangoHTTPAdapter:
    """``HTTPAdapter`` over a Django request.

    ``X-PAYMENT`` (the v1 header name) is read when ``PAYMENT-SIGNATURE`` is
    absent. ``hide_payment=True`` makes the request look unpaid, to obtain the
    SDK's plain 402 for a payment header that could not be decoded.
    """

    def __init__(self, request: HttpRequest, *, hide_payment: bool = False) -> None:
        self._request = request
        self._hide_payment = hide_payment
        self._url: str | None = None

    def _meta(self, name: str) -> str | None:
        # What ``request.headers`` reads, without building that mapping of every
        # header on each paid request (the SDK asks for a few by name).
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        value = self._request.META.get(key)
        return value if isinstance(value, str) else None

    def payment_header(self) -> str | None:
        """The raw payment header, v2 name first."""
        return self._meta(PAYMENT_SIGNATURE) or self._meta(X_PAYMENT)

    def get_header(self, name: str) -> str | None:
        """A request header, case-insensitive."""
        if name.upper() == PAYMENT_SIGNATURE:
            return None if self._hide_payment else self.payment_header()
        return self._meta(name)

    def get_method(self) -> str:
        """The HTTP method."""
        return self._request.method or "GET"

    def get_route(self) -> str | None:
        """The request's URL pattern (see :func:`route_of`)."""
        return route_of(self._request)

    def get_path(self) -> str:
        """The path (``request.path``, script prefix included)."""
        return self._request.path

    def get_url(self) -> str:
        """The absolute URL of the resource (built once: the SDK asks more than once)."""
        if self._url is None:
            self._url = self._request.build_absolute_uri()
        return self._url

    def get_accept_header(self) -> str:
        """The ``Accept`` header or ''."""
        return self._meta("Accept") or ""

    def get_user_agent(self) -> str:
        """The ``User-Agent`` header or ''."""
        return self._meta("User-Agent") or ""

    def get_query_params(self) -> dict[str, str | list[str]]:
        """Query parameters (lists where repeated)."""
        return {k: (v if len(v) > 1 else v[0]) for k, v in self._request.GET.lists() if v}

    def get_query_param(self, name: str) -> str | None:
        """One query parameter."""
        return self._request.GET.get(name)

    def get_body(self) -> Any:
        """Not read: the body is the view's business."""
        return None

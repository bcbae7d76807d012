"""``/metrics``: the Prometheus exposition, for a scraper with the token or a staff user.

Off (404) unless ``AIXYZ_METRICS`` is set. A scraper sends
``Authorization: Bearer <TOKEN>``; with ``STAFF`` on, a signed-in staff user
may read it in a browser too. Anyone else gets 401 (a token is configured:
the ``WWW-Authenticate`` header says how to send it) or 403. Under several
worker processes with ``PROMETHEUS_MULTIPROC_DIR`` set, every worker's files
are summed, so any worker answers for all of them.

A synchronous view on purpose: the channel gauges read the channel storage
with its synchronous API, and Django runs a sync view in a thread under ASGI.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Iterator
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from .channel_gauges import ChannelGauges
from .conf import MetricsConfig, get_metrics_config
from .instruments import instruments

__all__ = ["metrics"]

logger = logging.getLogger("aixyz_sessions.metrics")


class _Scrape:
    """The registries one scrape reads, as the one ``collect()`` the encoder asks."""

    def __init__(self, *collectors: Any) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Any]:
        for collector in self.collectors:
            yield from collector.collect()


def _allowed(request: HttpRequest, config: MetricsConfig) -> bool:
    if config.token is not None:
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            credential.strip().encode("utf-8", "surrogateescape"), config.token.encode()
        ):
            return True
    user = getattr(request, "user", None)  # without AuthenticationMiddleware: no staff
    return bool(config.staff and user is not None and user.is_active and user.is_staff)


def _registry() -> Any:
    from prometheus_client import REGISTRY, CollectorRegistry, multiprocess

    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # summed
    return registry


def _refusal(config: MetricsConfig) -> str:
    if config.token is None:
        return "metrics need a staff sign-in (no bearer token is configured)\n"
    if not config.staff:
        return "metrics need the bearer token\n"
    return "metrics need the bearer token or a staff sign-in\n"


@csrf_exempt  # a read; without it a POST got the CSRF page instead of 405
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    config = get_metrics_config()
    if config is None:
        raise Http404("metrics are off (AIXYZ_METRICS is not set)")
    if not _allowed(request, config):
        response = HttpResponse(
            _refusal(config),
            status=401 if config.token is not None else 403,
            content_type="text/plain; charset=utf-8",
        )
        if config.token is not None:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    try:
        from prometheus_client.exposition import choose_encoder
    except ImportError:
        return HttpResponse(
            "AIXYZ_METRICS is set but prometheus-client is not installed: "
            'pip install "aixyz-sessions[prometheus]"\n',
            status=503,
            content_type="text/plain; charset=utf-8",
        )
    instruments()  # a fresh worker still lists every metric's HELP and TYPE
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    try:
        body = encoder(_Scrape(_registry(), ChannelGauges()))
    except (OSError, ValueError) as exc:  # multiprocess files that cannot be read (E302)
        logger.error("aixyz_sessions: /metrics could not be collected: %s", exc)
        return HttpResponse(
            f"the metrics could not be collected: {type(exc).__name__} (see the server log)\n",
            status=503,
            content_type="text/plain; charset=utf-8",
        )
    response = HttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response

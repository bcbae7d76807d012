"""``/healthz`` (liveness) and ``/readyz`` (readiness), for load balancers and orchestrators.

* ``/healthz``: the process runs and serves requests. No I/O at all, so a
  store or facilitator outage never gets the process restarted (restarting
  would not fix them).
* ``/readyz``: a paid call could be served now. Each piece a paid call needs
  is asked once, concurrently: the session store (one read, as a staged
  session probes it before settling), the replay guard's store (one read of
  a record), the payment channels' storage when ``BATCH_SETTLEMENT`` is set,
  and the facilitator (``/supported``, through the payment runtime: its
  first answer is the runtime's initialization). A failing check is named
  with the code a paid call would fail with right now
  (``session_store_unavailable``, ``facilitator_timeout``,
  ``server_misconfigured``...); what the backend said (hosts, ports, the
  driver's error) is added only with ``DEBUG``, as paid calls do.

Both answer GET and HEAD only, with ``Cache-Control: no-store`` (a cached
answer would hide the state it reports). They are not paid and touch no
session, so they need no payment middleware exemption and no CSRF token.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_safe

from ..conf import SettingError, get_store
from ..exceptions import SessionStoreError, SessionStoreUnavailable
from ..payments.failures import RETRY_AFTER_SECONDS, PaymentFailure
from ..payments.readiness import misconfigured, ready_runtime

__all__ = ["FACILITATOR_FRESH_FOR", "healthz", "readyz"]

#: Seconds a successful ``/supported`` answer stands for the facilitator being
#: reachable: probes from several load balancers (every second or two each) then
#: cost the facilitator one request per worker process every 5 seconds at most. A
#: failure is not reused: the next probe asks again (one at a time per process).
FACILITATOR_FRESH_FOR = 5.0

#: Who and what the probes read: no payer is named so (payers are addresses), and
#: reading a key or record that does not exist writes nothing.
PROBE_PAYER = "aixyz-readyz"
PROBE_KEY = "readyz"
#: A well-formed channel id no channel has (ids are hashes).
PROBE_CHANNEL = "0x" + "0" * 64

OK = "ok"
OFF = "off"


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    return response


@require_safe
async def healthz(request: HttpRequest) -> HttpResponse:
    """200 ``{"status": "ok"}``: the process is up. Touches nothing."""
    return _no_store(JsonResponse({"status": "ok"}))


def _reason(failure: PaymentFailure) -> str:
    """A failed check as the response shows it: the code; with ``DEBUG``, the details."""
    return f"{failure.code}: {failure.message}" if settings.DEBUG else failure.code


async def _probe(where: str, read: Callable[[], Awaitable[Any]]) -> str:
    """``ok``, or why ``read`` failed (a store error, as a paid call would report it)."""
    try:
        await read()
    except SessionStoreError as exc:
        return _reason(PaymentFailure.store(exc, where))
    except Exception as exc:  # a custom backend's own error: still an outage, not a 500
        unavailable = SessionStoreUnavailable(f"{type(exc).__name__}: {exc}")
        return _reason(PaymentFailure.store(unavailable, where))
    return OK


async def _read_guard(guard: Any) -> None:
    try:
        await guard.recall(PROBE_PAYER, PROBE_KEY)
    except NotImplementedError:  # a claims-only guard (no records): claim and give back
        nonce = f"readyz-{time.time_ns()}"
        if await guard.claim(PROBE_PAYER, nonce, int(time.time())):
            await guard.release(PROBE_PAYER, nonce)


async def _facilitator() -> str:
    try:
        await ready_runtime(facilitator_within=FACILITATOR_FRESH_FOR)
    except PaymentFailure as failure:
        return _reason(failure)
    return OK


async def _checks() -> dict[str, str]:
    """Every check's answer by name, the probes run concurrently."""
    probes: dict[str, Awaitable[str]] = {}
    try:
        store = get_store()
    except SettingError as exc:  # manage.py check names it too
        probes["store"] = _constant(_reason(misconfigured(str(exc))))
    else:
        probes["store"] = _probe("the readiness probe", lambda: store.get(PROBE_PAYER, PROBE_KEY))
    if getattr(settings, "AIXYZ_X402", None) is None:  # no payments: nothing else to ask
        for name in ("replay_guard", "facilitator", "channels"):
            probes[name] = _constant(OFF)
    else:
        try:
            # The start-up checks and the runtime, as a paid call gets them (both cached).
            runtime = await ready_runtime(facilitator=False)
        except PaymentFailure as failure:
            for name in ("replay_guard", "facilitator", "channels"):
                probes[name] = _constant(_reason(failure))
        else:
            guard, scheme = runtime.replay_guard, runtime.channel_scheme
            probes["replay_guard"] = _probe(
                "the replay guard (readiness probe)", lambda: _read_guard(guard)
            )
            probes["facilitator"] = _facilitator()
            if scheme is None:
                probes["channels"] = _constant(OFF)
            else:
                storage = scheme.channel_storage
                # Channel storages are synchronous (they block on I/O): off the event loop.
                probes["channels"] = _probe(
                    "the channel storage (readiness probe)",
                    lambda: scheme.in_storage_thread(storage.get, PROBE_CHANNEL),
                )
    results = await asyncio.gather(*probes.values())
    return dict(zip(probes, results, strict=True))


async def _constant(answer: str) -> str:
    return answer


@require_safe
async def readyz(request: HttpRequest) -> HttpResponse:
    """200 ``{"status": "ready", "checks": {...}}``, else 503 naming what failed."""
    checks = await _checks()
    if all(answer in (OK, OFF) for answer in checks.values()):
        return _no_store(JsonResponse({"status": "ready", "checks": checks}))
    response = JsonResponse({"status": "not_ready", "checks": checks}, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return _no_store(response)

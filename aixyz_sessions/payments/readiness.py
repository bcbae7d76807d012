"""Whether this process can take a payment now: one start-up for every transport.

A paid call on any transport (HTTP, WebSocket, MCP, the agent) first asks
:func:`ready_runtime`. It refuses, as a
:class:`~aixyz_sessions.payments.failures.PaymentFailure`, what the client
cannot fix:

* the app's configuration cannot work (the start-up checks found problems,
  or ``AIXYZ_X402`` does not parse): ``server_misconfigured``, 500, the
  details logged once and shown to the client only with ``DEBUG``;
* the facilitator cannot say what it supports (asked once per process):
  ``facilitator_unavailable``/``facilitator_timeout``.
"""

from __future__ import annotations

import logging

from ..conf import SettingError
from .facilitators import facilitator_failures
from .failures import SERVER_MISCONFIGURED, PaymentFailure
from .runtime import PaymentRuntime, get_runtime

__all__ = ["MISCONFIGURED_MESSAGE", "misconfigured", "ready_runtime"]

logger = logging.getLogger("aixyz_sessions.payments")

#: What a client is told when the configuration is wrong (the log has the details).
MISCONFIGURED_MESSAGE = "the server's payment setup is misconfigured; its log names the problem"


def misconfigured(detail: str) -> PaymentFailure:
    """``server_misconfigured``: ``detail`` shown to the client only with ``DEBUG``."""
    from django.conf import settings

    return PaymentFailure(SERVER_MISCONFIGURED, detail if settings.DEBUG else MISCONFIGURED_MESSAGE)


async def ready_runtime(
    *, facilitator: bool = True, facilitator_within: float | None = None
) -> PaymentRuntime:
    """The payment runtime, ready for a paid call; ``facilitator=False`` for a sign-in.

    ``facilitator_within`` (seconds; the readiness probe ``/readyz``): also
    check that the facilitator still answers, unless it answered within that
    time (:meth:`~aixyz_sessions.payments.runtime.PaymentRuntime.confirm_facilitator`).
    Raises :class:`PaymentFailure` (see the module's docstring).
    """
    from ..checks import startup

    if not startup.found_no_problem():  # first call, or settings changed: look (once)
        problem = await startup.afirst_request_problem()
        if problem is not None:  # logged once, with the details
            raise misconfigured(str(problem))
    try:
        runtime = get_runtime()
    except SettingError as exc:
        logger.error("x402: %s", exc)
        raise misconfigured(str(exc)) from None
    if facilitator and (facilitator_within is not None or not runtime.initialized):
        with facilitator_failures() as failures:
            try:
                if facilitator_within is None:
                    await runtime.ensure_initialized()
                else:
                    await runtime.confirm_facilitator(facilitator_within)
            except Exception as exc:
                logger.warning("x402: facilitator /supported failed: %s", exc)
                raise PaymentFailure.facilitator(failures, exc) from exc
    return runtime

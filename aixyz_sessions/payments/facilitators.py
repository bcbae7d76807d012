"""Facilitator clients as the middleware uses them.

* :class:`LoopLocalHTTPFacilitator` wraps the SDK's ``HTTPFacilitatorClient``
  with one client per event loop: an ``httpx.AsyncClient`` is bound to the
  loop it first ran on, and Django runs async middleware on a fresh loop per
  request under WSGI (``async_to_sync``).
* :class:`ReportingFacilitator` wraps any client and turns a transport failure
  or an unparseable answer into :class:`FacilitatorUnavailable`, noting it for
  the current request so the middleware answers 502 instead of the SDK's 402
  (``x402HTTPResourceServer`` reports every verify exception as "payment
  invalid", which would blame the client for the facilitator's outage).
  A facilitator that does not answer within ``FACILITATOR_TIMEOUT`` is a
  :class:`FacilitatorTimeout`, which the middleware answers with 504.
"""

from __future__ import annotations

import asyncio
import weakref
from contextvars import ContextVar
from typing import TYPE_CHECKING

import httpx
from x402.http import FacilitatorConfig, HTTPFacilitatorClient

if TYPE_CHECKING:
    from x402.http import FacilitatorClient
    from x402.schemas import (
        PaymentPayload,
        PaymentPayloadV1,
        PaymentRequirements,
        PaymentRequirementsV1,
        SettleResponse,
        SupportedResponse,
        VerifyResponse,
    )

__all__ = [
    "FacilitatorTimeout",
    "FacilitatorUnavailable",
    "LoopLocalHTTPFacilitator",
    "ReportingFacilitator",
    "facilitator_failures",
]


class FacilitatorUnavailable(RuntimeError):
    """The facilitator could not be reached or answered something unusable."""


class FacilitatorTimeout(FacilitatorUnavailable):
    """The facilitator did not answer within ``FACILITATOR_TIMEOUT`` (a gateway timeout)."""


#: What a facilitator that does not answer in time raises (httpx; asyncio and sockets).
_TIMEOUTS = (httpx.TimeoutException, TimeoutError)


_failures: ContextVar[list[Exception] | None] = ContextVar(
    "aixyz_x402_facilitator_failures", default=None
)


class facilitator_failures:
    """Collect facilitator failures raised while this block runs (``with``)."""

    def __init__(self) -> None:
        self.errors: list[Exception] = []
        self._token: object = None

    def __enter__(self) -> facilitator_failures:
        self._token = _failures.set(self.errors)
        return self

    def __exit__(self, *exc: object) -> None:
        _failures.reset(self._token)  # type: ignore[arg-type]

    def __bool__(self) -> bool:
        return bool(self.errors)

    @property
    def message(self) -> str:
        """The first failure, for the 502/504 body."""
        return str(self.errors[0]) if self.errors else ""

    @property
    def timed_out(self) -> bool:
        """Whether the first failure was a timeout (504 rather than 502)."""
        return bool(self.errors) and isinstance(self.errors[0], FacilitatorTimeout)


def _note(exc: Exception) -> FacilitatorUnavailable:
    error: FacilitatorUnavailable
    if isinstance(exc, _TIMEOUTS):
        detail = f": {exc}" if str(exc) else ""
        error = FacilitatorTimeout(
            f"facilitator did not answer in time: {type(exc).__name__}{detail}"
        )
    else:
        error = FacilitatorUnavailable(f"facilitator unavailable: {type(exc).__name__}: {exc}")
    errors = _failures.get()
    if errors is not None:
        errors.append(error)
    return error


class ReportingFacilitator:
    """A ``FacilitatorClient`` whose failures become :class:`FacilitatorUnavailable`."""

    def __init__(self, inner: FacilitatorClient) -> None:
        self.inner = inner

    async def verify(
        self,
        payload: PaymentPayload | PaymentPayloadV1,
        requirements: PaymentRequirements | PaymentRequirementsV1,
    ) -> VerifyResponse:
        """Verify through the wrapped client."""
        try:
            return await self.inner.verify(payload, requirements)
        except Exception as exc:
            raise _note(exc) from exc

    async def settle(
        self,
        payload: PaymentPayload | PaymentPayloadV1,
        requirements: PaymentRequirements | PaymentRequirementsV1,
    ) -> SettleResponse:
        """Settle through the wrapped client."""
        try:
            return await self.inner.settle(payload, requirements)
        except Exception as exc:
            raise _note(exc) from exc

    def get_supported(self) -> SupportedResponse:
        """``/supported`` through the wrapped client (blocking: call it off the loop)."""
        try:
            return self.inner.get_supported()
        except Exception as exc:
            raise _note(exc) from exc


class LoopLocalHTTPFacilitator:
    """The SDK's ``HTTPFacilitatorClient``, one instance per running event loop."""

    def __init__(self, url: str, *, timeout: float) -> None:
        self.config = FacilitatorConfig(url=url, timeout=timeout)
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, HTTPFacilitatorClient]
        self._clients = weakref.WeakKeyDictionary()

    def _client(self) -> HTTPFacilitatorClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = HTTPFacilitatorClient(self.config)
        return client

    async def verify(
        self,
        payload: PaymentPayload | PaymentPayloadV1,
        requirements: PaymentRequirements | PaymentRequirementsV1,
    ) -> VerifyResponse:
        """POST /verify."""
        return await self._client().verify(payload, requirements)

    async def settle(
        self,
        payload: PaymentPayload | PaymentPayloadV1,
        requirements: PaymentRequirements | PaymentRequirementsV1,
    ) -> SettleResponse:
        """POST /settle."""
        return await self._client().settle(payload, requirements)

    def get_supported(self) -> SupportedResponse:
        """GET /supported (blocking, with its own short-lived sync client)."""
        return HTTPFacilitatorClient(self.config).get_supported()

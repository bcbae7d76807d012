"""The SDK's ``batch-settlement`` server scheme, with its channel storage kept off the event loop.

The SDK's scheme (``x402.mechanisms.evm.batch_settlement.server``) keeps each
channel's state behind a synchronous ``ChannelStorage`` and touches it from
its lifecycle hooks (``before_verify`` reads the channel, ``after_verify``
reserves it, ``before_settle`` adds the call's price to what it charged, the
cancel and failure hooks release the reservation). The async resource server
calls those hooks on the event loop, where the database refuses to run
(``SynchronousOnlyOperation``) and Redis would block every other request.

:class:`ChannelScheme` runs each of those hooks in a worker thread (the
resource server awaits whatever a hook returns): the same thread-sensitive
hop as the database session store for :class:`DatabaseChannelStorage`, a
plain thread otherwise. :class:`LoopSafeStorage` covers the few places the
SDK calls the storage directly, synchronously, on the loop (the refund
enrichment before settling, the async channel manager): there the call is
run in a thread and waited for, which blocks the loop only on those rare
paths and never trips Django's check.

Nothing else changes: verification, the reservation that lets one call at a
time through a channel, the cumulative voucher check and the corrective 402
are the SDK's.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import contextvars
import functools
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from x402.mechanisms.evm.batch_settlement.errors import ERR_CUMULATIVE_AMOUNT_MISMATCH
from x402.mechanisms.evm.batch_settlement.server import (
    BatchSettlementEvmScheme,
    BatchSettlementEvmSchemeServerConfig,
)
from x402.mechanisms.evm.batch_settlement.server.storage import (
    Channel,
    ChannelStorage,
    ChannelUpdate,
    ChannelUpdateResult,
)
from x402.mechanisms.evm.batch_settlement.types import is_refund_payload, is_voucher_payload
from x402.schemas import AbortResult

from ..exceptions import SessionStoreError

__all__ = ["ChannelScheme", "LoopSafeStorage", "storage_failures"]

T = TypeVar("T")

#: Why a refund is refused when the channel has nothing unclaimed (see ``_before_refund``).
REFUND_NEEDS_UNCLAIMED = "refund_needs_unclaimed_voucher"

#: Threads for the rare storage calls the SDK makes on the event loop.
_blocking_calls = concurrent.futures.ThreadPoolExecutor(
    max_workers=4, thread_name_prefix="aixyz-channels"
)


#: Where :class:`LoopSafeStorage` notes a store failure for the paid call around it.
_failures: ContextVar[list[SessionStoreError] | None] = ContextVar(
    "aixyz_channel_storage_failures", default=None
)


@contextmanager
def storage_failures() -> Iterator[list[SessionStoreError]]:
    """Collect the channel storage's failures inside this block (the SDK hides them).

    The SDK's hooks turn any storage error into "verification state
    unavailable", a 402 the client cannot act on; a storage that is down is
    the server's outage (503 with ``Retry-After``), and the paid-call core
    says so when this list is not empty. Hooks run in worker threads with
    a copy of the caller's context: the list is the same object there.
    """
    noted: list[SessionStoreError] = []
    token = _failures.set(noted)
    try:
        yield noted
    finally:
        _failures.reset(token)


def _on_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class LoopSafeStorage:
    """A ``ChannelStorage`` that may also be called from a running event loop.

    Off the loop (a worker thread, a management command) it calls ``inner``
    directly. On the loop it runs the call in a thread and waits: correct,
    and only the SDK's rare direct calls come this way (see the module).
    """

    def __init__(self, inner: ChannelStorage) -> None:
        self.inner = inner

    def __repr__(self) -> str:
        return f"LoopSafeStorage({self.inner!r})"

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            if _on_loop():
                return _blocking_calls.submit(fn, *args).result()
            return fn(*args)
        except SessionStoreError as exc:
            noted = _failures.get()
            if noted is not None:
                noted.append(exc)
            raise

    def get(self, channel_id: str) -> Channel | None:
        return self._call(self.inner.get, channel_id)

    def list(self) -> builtins.list[Channel]:
        return self._call(self.inner.list)

    def update_channel(self, channel_id: str, update: ChannelUpdate) -> ChannelUpdateResult:
        return self._call(self.inner.update_channel, channel_id, update)


#: Threads that keep their database connection between channel calls (see ``_hop_for``).
DATABASE_THREADS = 8
_database_threads: concurrent.futures.ThreadPoolExecutor | None = None
_database_threads_lock = threading.Lock()


def _database_executor() -> concurrent.futures.ThreadPoolExecutor:
    global _database_threads
    with _database_threads_lock:
        if _database_threads is None:
            _database_threads = concurrent.futures.ThreadPoolExecutor(
                max_workers=DATABASE_THREADS, thread_name_prefix="aixyz-channels-db"
            )
        return _database_threads


def _hop_for(storage: ChannelStorage) -> Callable[[Callable[..., T]], Callable[..., Awaitable[T]]]:
    """How a hook reaches its thread.

    The database storage runs on a few long-lived threads of its own: Django's
    connections are per thread, and under ASGI a request's thread-sensitive
    code gets a new thread, so a new connection, per request (measured: a
    PostgreSQL connection, about 4 ms, on every channel call). These threads
    keep theirs (``DatabaseChannelStorage`` closes one that failed). Other
    storages take the default executor's threads. The caller's context goes
    along (the storage-failure slot of :func:`storage_failures`).
    """
    from .storage import DatabaseChannelStorage

    executor = _database_executor() if isinstance(storage, DatabaseChannelStorage) else None

    def in_thread(fn: Callable[..., T]) -> Callable[..., Awaitable[T]]:
        @functools.wraps(fn)
        async def run(*args: Any) -> T:
            context = contextvars.copy_context()
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(executor, lambda: context.run(fn, *args))

        return run

    return in_thread


class ChannelScheme(BatchSettlementEvmScheme):
    """``BatchSettlementEvmScheme`` whose storage-touching hooks run off the event loop."""

    def __init__(
        self,
        receiver_address: str,
        storage: ChannelStorage,
        *,
        withdraw_delay: int | None = None,
    ) -> None:
        self.channel_storage = storage
        super().__init__(
            receiver_address,
            BatchSettlementEvmSchemeServerConfig(
                storage=LoopSafeStorage(storage),
                withdraw_delay=withdraw_delay,
            ),
        )
        self._hop = _hop_for(storage)
        from .channel_ids import install

        install()  # the channel id's hash, once per channel (see channel_ids)

    def _off_loop(self, hook: Callable[[Any], T], context: Any) -> Awaitable[T]:
        return self._hop(hook)(context)

    def in_storage_thread(self, fn: Callable[..., T], *args: Any) -> Awaitable[T]:
        """``fn(*args)`` on the threads the storage's hooks use (its connections live there)."""
        return self._hop(fn)(*args)

    # The resource server awaits a hook's coroutine; each of these reads or
    # writes the channel, so each runs in a thread, unless the SDK's hook would
    # return at once without storage for this payload (a voucher's after_settle
    # and settlement enrichment, the enrichment of a 402 that is no correction).
    def before_verify(self, context: Any) -> Any:
        if is_refund_payload(context.payment_payload.payload):
            return self._off_loop(self._before_refund, context)
        return self._off_loop(super().before_verify, context)

    def _before_refund(self, context: Any) -> Any:
        """A refund only while the channel's latest voucher is still a secret.

        The SDK authorizes a cooperative refund with the payer's latest voucher
        sent again, nothing fresher. Once that voucher is claimed it is public
        (claims carry it on chain), and anyone could replay it to refund an
        idle channel and delete its record, leaving its owner's client stuck.
        While something charged is unclaimed, only the payer and this server
        know the voucher; after that, the payer withdraws through the contract
        or waits for ``REFUND_AFTER``.
        """
        raw = context.payment_payload.payload
        try:
            channel = self.get_storage().get(str(raw["voucher"]["channelId"]))
        except (KeyError, TypeError, ValueError):
            channel = None
        if channel is None or int(channel.charged_cumulative_amount) <= int(channel.total_claimed):
            return AbortResult(
                reason=REFUND_NEEDS_UNCLAIMED,
                message="a refund is asked for with the channel's latest unclaimed voucher; "
                "this channel has none (withdraw through the contract instead)",
            )
        return super().before_verify(context)

    def after_verify(self, context: Any) -> Any:
        return self._off_loop(super().after_verify, context)

    def on_verify_failure(self, context: Any) -> Any:
        return self._off_loop(super().on_verify_failure, context)

    def on_verified_payment_canceled(self, context: Any) -> Any:
        return self._off_loop(super().on_verified_payment_canceled, context)

    def before_settle(self, context: Any) -> Any:
        return self._off_loop(super().before_settle, context)

    def after_settle(self, context: Any) -> Any:
        if _is_voucher(context):  # the voucher was charged in before_settle: nothing to do
            return None
        return self._off_loop(super().after_settle, context)

    def on_settle_failure(self, context: Any) -> Any:
        return self._off_loop(super().on_settle_failure, context)

    def enrich_payment_required_response(self, context: Any) -> Any:
        if context.error != ERR_CUMULATIVE_AMOUNT_MISMATCH:  # only a correction reads storage
            return None
        return self._off_loop(self._correction, context)

    def _correction(self, context: Any) -> Any:
        """The SDK's corrective 402 (the channel's state, its latest voucher), for its payer only.

        The SDK finds a stale amount before it checks any signature, and
        its correction carries the stored channel: balance, charges, the
        latest voucher's signature. A stranger can compute a payer's channel
        id (the config is public but for a salt that defaults to zero): the
        correction goes only to a voucher its payer authorizer signed.
        """
        payload = context.payment_payload
        if payload is None:
            return None
        if not _signed_by_its_payer(payload):
            # The SDK keeps a snapshot for this payload until the correction takes
            # it; taken here, or a stranger's probes would pile up in memory.
            self.take_request_context(payload)
            return None
        return super().enrich_payment_required_response(context)

    def enrich_settlement_response(self, context: Any) -> Any:
        if _is_voucher(context):  # before_settle wrote the voucher's response already
            return None
        return self._off_loop(super().enrich_settlement_response, context)


def _signed_by_its_payer(payload: Any) -> bool:
    """Whether a channel payload's voucher is signed by its config's payer authorizer."""
    from x402.mechanisms.evm.batch_settlement.facilitator.utils import (
        verify_batch_settlement_voucher_typed_data,
    )
    from x402.mechanisms.evm.utils import get_evm_chain_id

    raw = payload.payload
    try:
        config, voucher = raw["channelConfig"], raw["voucher"]
        if int(str(config["payerAuthorizer"]), 16) == 0:
            return False  # a smart-wallet payer: no local check, no correction
        return bool(
            verify_batch_settlement_voucher_typed_data(
                signer=None,  # type: ignore[arg-type]  # the ECDSA path needs none
                channel_id=str(voucher["channelId"]),
                max_claimable_amount=str(voucher["maxClaimableAmount"]),
                payer_authorizer=str(config["payerAuthorizer"]),
                payer=str(config["payer"]),
                signature=str(voucher.get("signature", "0x")),
                chain_id=get_evm_chain_id(str(payload.accepted.network)),
            )
        )
    except Exception:  # any malformed field: not a voucher its payer signed
        return False


def _is_voucher(context: Any) -> bool:
    return is_voucher_payload(context.payment_payload.payload)

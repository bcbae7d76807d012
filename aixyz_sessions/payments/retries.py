"""Exactly-once paid calls: the x402 ``payment-identifier`` extension, for every transport.

A client that lost the answer to a paid call retries it with the same
payment (the same ``PAYMENT-SIGNATURE``, WebSocket ``payment`` or MCP
``_meta["x402/payment"]``). Without help the replay guard refuses it (that
authorization was spent) and the client has paid for nothing. With the
``payment-identifier`` extension (the client puts an ``id`` in the payment's
``extensions``; every paid resource here declares it) the call is kept:

* the first call with an id runs; its answer (status, body, settlement) is
  kept in the replay guard's backend for ``AIXYZ_X402["PAYMENT_ID_TTL"]``
  once its payment settled;
* a retry with the same id, the same payment and the same request gets the
  kept answer: nothing is verified, run or settled again;
* the same id with another request, or with another payment, is 409
  ``payment_identifier_conflict``;
* a retry that arrives while the first call runs waits for it (up to
  :data:`WAIT_SECONDS`), then gets its answer, or 409 ``payment_in_progress``;
  never a second run;
* a call that ends unsettled keeps nothing: a retry runs it anew.

Records are keyed by the payer the payment names and the id. The kept answer
is served only to the same payment bytes (its digest is part of the record),
so naming somebody else's address gets nothing. An answer larger than
:data:`MAX_KEPT_BYTES` (or a streamed one) is not kept: its retries get 409.
A kept answer lives no longer than its authorization (``validBefore``): once
that has passed, a header somebody saw buys nothing here any more.

A tool call is one request whichever transport carries it (WebSocket, MCP):
its answer is kept in one form (:class:`ToolAnswer`) that each transport
renders in its own shape, so a call paid over one and retried over the other
gets the same answer; the HTTP tool endpoint marks its requests as tool calls
(:class:`ToolCall`), so they share that form too. (Any other paid view keeps
the response it sent; its requests are told apart from tool calls, so a
retry of one as the other is a clear 409.)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..replay import PayerRecords, Record
from .failures import (
    INVALID_PAYMENT_IDENTIFIER,
    PAYMENT_ID_CONFLICT,
    PAYMENT_IN_PROGRESS,
    PaymentFailure,
)

__all__ = [
    "MAX_KEPT_BYTES",
    "TOOL_CALL_ATTR",
    "WAIT_SECONDS",
    "Retry",
    "ToolAnswer",
    "ToolCall",
    "begin",
    "fingerprint",
    "forget",
    "kept_record",
    "retry_of",
    "tool_fingerprint",
]

#: Largest answer kept for retries (its JSON, bytes).
MAX_KEPT_BYTES = 1024 * 1024
#: How long a retry waits for the first call with its id to finish.
WAIT_SECONDS = 10.0
#: How long a running call holds its id if its process dies before finishing.
RUNNING_SECONDS = 120
_POLL = 0.05
_KEY = "payment-identifier"


@dataclass(frozen=True)
class Retry:
    """What identifies a paid call for retries: payer, id, payment digest, request digest."""

    payer: str
    id: str
    payment: str
    request: str

    @property
    def name(self) -> str:
        """The guard's record name (hashed: ids are case-sensitive, the guard's names not)."""
        return "pid:" + hashlib.sha256(self.id.encode()).hexdigest()[:40]


@dataclass(frozen=True)
class ToolAnswer:
    """A settled tool call as kept for retries, whatever transport carried it.

    ``result`` is the tool's JSON result, ``settlement`` the SDK's
    ``SettleResponse`` as JSON (what MCP puts in ``_meta``), and
    ``payment_response`` its ``PAYMENT-RESPONSE`` encoding.
    """

    result: Any
    payer: str | None
    settlement: dict[str, Any] = field(default_factory=dict)
    payment_response: str | None = None

    FORM = "tool"

    def kept(self) -> dict[str, Any] | None:
        """The JSON kept for it (``None``: a result that is not JSON cannot be kept)."""
        data = {
            "form": self.FORM,
            "result": self.result,
            "payer": self.payer,
            "settlement": self.settlement,
            "payment_response": self.payment_response,
        }
        try:
            json.dumps(data)
        except (TypeError, ValueError):
            return None
        return data

    @classmethod
    def of(cls, kept: dict[str, Any]) -> ToolAnswer:
        """The answer a record holds; 409 when it was kept by another kind of call."""
        if kept.get("form") != cls.FORM:
            raise PaymentFailure(
                PAYMENT_ID_CONFLICT,
                "this payment identifier was used for another kind of call; "
                "use a new id for a new call",
            )
        settlement = kept.get("settlement")
        settlement = settlement if isinstance(settlement, dict) else {}
        header = kept.get("payment_response")
        if not header and settlement:
            from x402.http import encode_payment_response_header
            from x402.schemas import SettleResponse

            header = encode_payment_response_header(SettleResponse.model_validate(settlement))
        return cls(kept.get("result"), kept.get("payer"), settlement, header or None)


def fingerprint(*parts: object) -> str:
    """A digest of what makes a request the same request (method, path, arguments...)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, bytes):
            data = part
        elif isinstance(part, str):
            data = part.encode()
        else:
            data = json.dumps(part, sort_keys=True, separators=(",", ":")).encode()
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


#: The request attribute where a view says which tool call the request is
#: (:class:`ToolCall`): the HTTP middleware then keeps and renders its answer
#: as every other transport does (see :class:`ToolAnswer`).
TOOL_CALL_ATTR = "aixyz_tool_call"


@dataclass(frozen=True)
class ToolCall:
    """An HTTP request that is a call of tool ``name``; ``arguments()`` reads them.

    Read only when the payment carries an identifier (a retry is possible);
    an ``arguments()`` that raises makes the request identify by its bytes.
    """

    name: str
    arguments: Callable[[], object]

    def fingerprint(self) -> str:
        """:func:`tool_fingerprint` of this call (HTTP, WebSocket and MCP alike)."""
        return tool_fingerprint(self.name, self.arguments())


def tool_fingerprint(name: str, arguments: object) -> str:
    """What a retry of a call of tool ``name`` must repeat, on every transport: its arguments.

    HTTP, WebSocket and MCP name a tool call alike, so a call paid over one
    and retried over another is the same call (it gets the kept answer).
    """
    return fingerprint("tool", name, arguments or {})


def retry_of(payload: dict[str, Any], request: Callable[[], str]) -> Retry | None:
    """The payment identifier a payment carries, or ``None`` (not every call has one).

    ``payload`` is the screened payment's decoded JSON
    (:func:`~aixyz_sessions.payments.authorization.screen_payment_header`);
    ``request()`` gives the request's :func:`fingerprint` (asked only when
    there is an id). Raises :class:`PaymentFailure` ``invalid_payment_identifier``
    (400) for an id that breaks the extension's rules (16 to 128 letters,
    digits, ``-`` and ``_``).
    """
    extensions = payload.get("extensions")
    extension = extensions.get(_KEY) if isinstance(extensions, dict) else None
    info = extension.get("info") if isinstance(extension, dict) else None
    if not isinstance(info, dict) or "id" not in info:
        return None  # no id (SDK clients echo the declaration without one): no retries asked
    from x402.extensions.payment_identifier import is_valid_payment_id

    payment_id = info["id"]
    if not isinstance(payment_id, str) or not is_valid_payment_id(payment_id):
        raise PaymentFailure(
            INVALID_PAYMENT_IDENTIFIER,
            "payment-identifier id must be 16 to 128 letters, digits, '-' or '_'",
        )
    from .authorization import claimed_payer

    payer = claimed_payer(payload.get("payload"))
    if payer is None:
        return None  # no payer named: the payment is refused later anyway
    # The payment's digest is of its JSON, canonical: HTTP sends it base64-encoded as
    # the SDK writes it, a message as an object; the same payment is the same call.
    return Retry(payer.lower(), payment_id, fingerprint(payload), request())


async def begin(guard: PayerRecords, retry: Retry) -> dict[str, Any] | None:
    """Take the id for this call (``None``: run it), or the kept answer of its first call.

    Raises :class:`PaymentFailure` 409: ``payment_identifier_conflict`` (the id
    was used for another request or payment, or its answer was not kept),
    ``payment_in_progress`` (the first call is still running).
    """
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        # Taking the id and writing "running" is one step (one round trip on
        # Redis); the token makes the value this call's own (see PayerRecords.take).
        running = json.dumps(
            {
                "state": "running",
                "payment": retry.payment,
                "request": retry.request,
                "token": secrets.token_hex(8),
            }
        )
        found = await guard.take(retry.payer, retry.name, running, time.time() + RUNNING_SECONDS)
        if found is None:
            return None
        record = _record(found)
        if record is not None:
            if record.get("payment") != retry.payment or record.get("request") != retry.request:
                what = "payment" if record.get("payment") != retry.payment else "request"
                raise PaymentFailure(
                    PAYMENT_ID_CONFLICT,
                    f"this payment identifier was already used with another {what}; "
                    "use a new id for a new call",
                )
            if record.get("state") == "done":
                answer = record.get("answer")
                if not isinstance(answer, dict):
                    raise PaymentFailure(
                        PAYMENT_ID_CONFLICT,
                        "this call was already served and paid; its answer was too large "
                        "to keep for retries",
                    )
                return answer
        if time.monotonic() >= deadline:
            raise PaymentFailure(
                PAYMENT_IN_PROGRESS,
                "the first call with this payment identifier is still running; "
                "retry later for its answer",
            )
        await asyncio.sleep(_POLL)


def kept_record(retry: Retry, answer: dict[str, Any] | None, ttl: float) -> Record:
    """The guard's record keeping the settled call's ``answer`` (JSON-able) for ``ttl`` seconds.

    ``None`` (or an answer too large to keep) records that the call was
    served without an answer: its retries get 409.
    """
    record = {"state": "done", "payment": retry.payment, "request": retry.request}
    text = json.dumps({**record, "answer": answer})
    if answer is None or len(text) > MAX_KEPT_BYTES:
        text = json.dumps({**record, "answer": None})
    return Record(retry.payer, retry.name, text, time.time() + ttl)


async def forget(guard: PayerRecords, retry: Retry) -> None:
    """The call ended unsettled: free its id, so that a retry runs it anew."""
    await guard.forget_quietly(retry.payer, retry.name)


def _record(value: str | None) -> dict[str, Any] | None:
    """A record written by :func:`begin` or :func:`kept_record`; ``None``: a bare claim."""
    if not value or not value.startswith("{"):
        return None
    try:
        record = json.loads(value)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None

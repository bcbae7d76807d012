"""``demo_call --scheme batch``: one payer pays the demo through a payment channel.

The payer's x402 client has the SDK's batch-settlement client scheme only
(``x402.mechanisms.evm.batch_settlement.client``), so every paid tool is paid
through one channel: the first call deposits (the one on-chain transaction),
every later call sends a cumulative voucher that the server verifies locally.
Each ``PAYMENT-RESPONSE`` says what the call charged (``extra.chargedAmount``)
and the channel's running total (``extra.channelState.chargedCumulativeAmount``);
the run checks that the calls' charges add up to that total.

The SDK's HTTP client (``http``, ``a2a``) reads each settle response itself;
over the WebSocket and MCP the client is handed it here, or its next voucher
would not know what the server charged.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx
from x402 import x402Client
from x402.mechanisms.evm.batch_settlement.client import (
    BatchSettlementEvmScheme,
    BatchSettlementEvmSchemeOptions,
)
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.schemas import PaymentPayload, PaymentResponseContext, SettleResponse

from demo_project.management.commands.demo_call import (
    CALLERS,
    GET,
    KEYS,
    PUT,
    SUMMARY,
    TIMEOUT,
    CallFailed,
    Paid,
    Payer,
    _decimals,
    _dollars,
)

SCHEME = "batch-settlement"
#: Transports whose client does not read the settle response itself.
FED_BY_HAND = ("ws", "mcp")


@dataclass
class ChannelPayer(Payer):
    """A fresh key whose client pays through a channel only (no ``exact``, no ``upto``).

    ``payload`` is what the client signed last (a deposit or a voucher): the
    settle response is handed back with it over transports that do not.
    """

    payload: PaymentPayload | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.x402 = x402Client()
        scheme = BatchSettlementEvmScheme(
            EthAccountSigner(self.account), BatchSettlementEvmSchemeOptions()
        )
        self.x402.register("eip155:*", scheme)
        self.x402.on_after_payment_creation(self._signed)

    def _signed(self, context: Any) -> None:
        super()._signed(context)
        payload = context.payment_payload
        self.payload = payload if isinstance(payload, PaymentPayload) else None


@dataclass(frozen=True)
class Charge:
    """What one channel call did, from its ``PAYMENT-RESPONSE`` (atomic units)."""

    charged: int  # extra.chargedAmount: this call
    cumulative: int  # extra.channelState.chargedCumulativeAmount: the channel so far
    balance: int  # extra.channelState.balance: deposited into the channel
    deposit: int  # deposited by this call (0: a voucher only, no transaction)
    transaction: str | None
    channel: str


def charge_of(settled: SettleResponse | None) -> Charge | None:
    """The call's charge, or ``None`` when the response is no channel settlement."""
    extra = (settled.extra if settled is not None else None) or {}
    state = extra.get("channelState")
    if settled is None or not isinstance(state, dict) or "chargedAmount" not in extra:
        return None
    try:
        transaction = settled.transaction or None
        return Charge(
            charged=int(extra["chargedAmount"]),
            cumulative=int(state["chargedCumulativeAmount"]),
            balance=int(state.get("balance", 0)),
            # A deposit is the only channel call with a transaction; its amount is the deposit.
            deposit=int(settled.amount or 0) if transaction else 0,
            transaction=transaction,
            channel=str(state.get("channelId", "")),
        )
    except (KeyError, TypeError, ValueError):
        return None


async def acknowledge(payer: ChannelPayer, paid: Paid, transport: str) -> None:
    """Give the client the settle response where the SDK's transport does not."""
    if transport not in FED_BY_HAND or payer.payload is None or paid.settlement is None:
        return
    await payer.x402.handle_payment_response(
        PaymentResponseContext(
            payment_payload=payer.payload,
            requirements=payer.payload.accepted,
            settle_response=paid.settlement,
        )
    )


def offers_channels(base: str) -> bool:
    """Whether the demo's 402 offers ``batch-settlement`` (``AIXYZ_DEMO_CHANNELS`` on)."""
    from x402.http import decode_payment_required_header

    response = httpx.post(f"{base}/tools/{KEYS}", json={}, timeout=TIMEOUT)
    header = response.headers.get("PAYMENT-REQUIRED")
    if response.status_code != 402 or not header:
        return False
    return any(o.scheme == SCHEME for o in decode_payment_required_header(header).accepts)


def in_process_facilitator(base: str) -> bool:
    """The demo's JSON index says its facilitator is the in-process local one."""
    try:
        facts = httpx.get(f"{base}/", timeout=TIMEOUT).json()
    except (httpx.HTTPError, ValueError):
        return False
    label = facts.get("facilitator") if isinstance(facts, dict) else None
    return isinstance(label, str) and label.startswith("local (in process")


def is_local(base: str) -> bool:
    """The server runs on this machine (a loopback address or ``localhost``)."""
    host = urlsplit(base).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ChannelRun:
    """One payer, one channel: the demo's sequence plus ``calls`` cheap reads, checked."""

    def __init__(self, command: Any, base: str, transport: str, calls: int) -> None:
        self.out, self.style = command.stdout, command.style
        self.base, self.transport, self.calls = base, transport, calls
        self.payer = ChannelPayer("A")
        self.charges: list[Charge] = []
        self.failures: list[str] = []
        self.step = 0

    # -- amounts -------------------------------------------------------------------------------

    def money(self, amount: int) -> str:
        """``$0.0011`` when the asset's decimals are known, else atomic units."""
        chosen = self.payer.requirements
        decimals = _decimals(chosen.asset, chosen.network) if chosen is not None else None
        return f"{amount} units" if decimals is None else f"${_dollars(amount, decimals):f}"

    def dollars(self, amount: int) -> Decimal | None:
        chosen = self.payer.requirements
        decimals = _decimals(chosen.asset, chosen.network) if chosen is not None else None
        return None if decimals is None else _dollars(amount, decimals)

    # -- one call ------------------------------------------------------------------------------

    async def call(self, caller: Any, name: str, arguments: dict[str, Any], title: str) -> Any:
        """Pay one call through the channel; its result (``None`` when it failed)."""
        self.step += 1
        shown = json.dumps(arguments, ensure_ascii=False)
        self.out.write(self.style.MIGRATE_HEADING(f"{self.step:>2}. {title}"))
        self.out.write(f"    {name} {shown}")
        try:
            paid: Paid = await caller(name, arguments)
        except CallFailed as exc:
            self.fail(f"step {self.step} ({name}) failed: {exc}")
            return None
        await acknowledge(self.payer, paid, self.transport)
        charge = charge_of(paid.settlement)
        result = json.dumps(paid.result, ensure_ascii=False)
        if charge is None:
            self.out.write(f"    -> {result}")
            self.fail(f"step {self.step} ({name}): no channel charge reported")
            return paid.result
        self.charges.append(charge)
        self.out.write(f"    -> {result}  [{self.receipt(charge)}]")
        return paid.result

    def receipt(self, charge: Charge) -> str:
        """``deposit $0.1 (tx 0x12...), charged $0.01, channel total $0.01``."""
        charged, total = self.money(charge.charged), self.money(charge.cumulative)
        text = f"charged {charged}, channel total {total}"
        if charge.deposit:
            tx = (charge.transaction or "")[:18]
            return f"deposit {self.money(charge.deposit)} (tx {tx}...), {text}"
        return f"voucher, {text}"

    def expect(self, ok: bool, what: str) -> None:
        if not ok:
            self.fail(f"step {self.step}: expected {what}")

    def fail(self, message: str) -> None:
        self.out.write(self.style.ERROR(f"    !! {message}"))
        self.failures.append(message)

    # -- the sequence --------------------------------------------------------------------------

    async def sequence(self, caller: Any) -> None:
        """The demo's calls as one payer (store, read, list, summarize, delete), then reads."""
        greeting, note = "hello from A", "A's private note"
        r = await self.call(caller, PUT, {"key": "greeting", "value": greeting}, "store a greeting")
        self.expect(r == {"success": True, "key": "greeting", "value": greeting}, "it stored")
        r = await self.call(caller, PUT, {"key": "note", "value": note}, "store a note")
        self.expect(r == {"success": True, "key": "note", "value": note}, "it stored")
        r = await self.call(caller, GET, {"key": "greeting"}, "read the greeting back")
        self.expect(r == {"success": True, "key": "greeting", "value": greeting}, "the greeting")
        r = await self.call(caller, GET, {}, "list all content")
        both = {"success": True, "content": {"greeting": greeting, "note": note}, "count": 2}
        self.expect(r == both, "both entries")
        r = await self.call(caller, KEYS, {}, "list the keys")
        self.expect(r == {"success": True, "keys": ["greeting", "note"], "count": 2}, "both keys")
        r = await self.call(caller, SUMMARY, {}, "summarize (metered: the voucher covers $0.05)")
        self.expect_metered(r, len(greeting.encode()) + len(note.encode()))
        r = await self.call(caller, PUT, {"key": "note", "value": None}, "delete the note")
        self.expect(r == {"success": True, "key": "note", "deleted": True}, "deleted: true")
        r = await self.call(caller, GET, {"key": "note"}, "read the deleted note")
        self.expect(isinstance(r, dict) and r.get("success") is False, "no content under 'note'")
        for index in range(self.calls):
            title = f"read the greeting again ({index + 1} of {self.calls} cheap calls)"
            r = await self.call(caller, GET, {"key": "greeting"}, title)
            self.expect(r == {"success": True, "key": "greeting", "value": greeting}, "greeting")

    def expect_metered(self, result: Any, size: int) -> None:
        """The summary charged its cost, not the $0.05 its voucher could cover."""
        cost = result.get("cost") if isinstance(result, dict) else None
        counted = isinstance(result, dict) and (result.get("count"), result.get("bytes"))
        self.expect(counted == (2, size), f"2 entries of {size} bytes")
        charged = self.dollars(self.charges[-1].charged) if self.charges else None
        self.expect(
            charged is not None and f"${charged:f}" == cost, f"the summary's cost {cost} charged"
        )

    # -- totals --------------------------------------------------------------------------------

    def totals(self) -> None:
        """Deposit, charges, the server's cumulative charge, transactions; checked."""
        out, charges = self.out, self.charges
        if not charges:
            self.fail("no call was charged through a channel")
            return
        deposits = [c for c in charges if c.deposit]
        total = sum(c.charged for c in charges)
        final = charges[-1].cumulative
        out.write("")
        out.write(f"Channel {charges[-1].channel} (payer {self.payer.address})")
        word = "deposit" if len(deposits) == 1 else "deposits"
        deposited = self.money(sum(c.deposit for c in deposits))
        out.write(f"  deposit:                 {deposited} ({len(deposits)} {word})")
        out.write(
            f"  charged:                 {self.money(total)} over {len(charges)} calls "
            "(the sum of their chargedAmount)"
        )
        out.write(
            f"  chargedCumulativeAmount: {self.money(final)} (the channel's total, "
            "as the server reported it)"
        )
        out.write(
            f"  on-chain transactions:   {len(deposits)} ({len(deposits)} {word}) "
            f"for {len(charges)} paid calls"
        )
        if not deposits or not charges[0].deposit:
            self.fail("the channel's first call to deposit")
        if len({c.channel for c in charges}) != 1:
            self.fail("every call to go through one channel")
        if final != total:
            self.fail(f"chargedCumulativeAmount {final} to equal the calls' charges {total}")
        if not self.failures:
            out.write(
                self.style.SUCCESS(
                    f"CHANNEL OK: {len(charges)} calls charged {self.money(total)}, "
                    "the channel's cumulative charge."
                )
            )

    def next_steps(self) -> None:
        """How to claim and settle what was charged (only this machine runs manage.py)."""
        if not is_local(self.base):
            return
        if in_process_facilitator(self.base):
            # The in-process facilitator's chain and claim key live in the server's
            # process: claim there (the admin), or through a facilitator both share.
            self.out.write(
                "Claim and settle what was charged: in the admin, Payment channels, "
                f"'Claim and settle now' ({self.base}/admin/aixyz_sessions/channel/)"
            )
            self.out.write(
                "  (manage.py aixyz_channels runs in another process: it needs a facilitator "
                "both share, e.g. `python manage.py aixyz_local_facilitator` and the demo "
                "started with X402_FACILITATOR_URL=http://127.0.0.1:4020)"
            )
            return
        self.out.write("Claim and settle what was charged: python manage.py aixyz_channels --all")

    async def run(self) -> list[str]:
        out = self.out
        out.write(
            f"demo_call: {self.base} over {self.transport}; every call below is paid "
            f"through one payment channel ({SCHEME})"
        )
        out.write(f"  payer: {self.payer.address}  (fresh random key; channel scheme only)\n")
        async with CALLERS[self.transport](self.base, self.payer) as caller:
            await self.sequence(caller)
        self.totals()
        self.next_steps()
        return self.failures

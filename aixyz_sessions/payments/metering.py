"""``charge()``: what a metered call (x402 ``upto``) used, reported by the call itself.

An ``upto`` payment authorizes a maximum; the call settles only what it
reports with :func:`charge`, once its work succeeded::

    @paid(upto="$0.05")
    async def summarize(request):
        text = ...
        charge(f"${len(text) / 100_000:.6f}")   # dollars, or an int of atomic units
        return JsonResponse({"summary": text})

Rules (the x402 ``upto`` scheme's, kept on every transport by
:class:`~aixyz_sessions.payments.paid_call.PaidCall`):

* the last ``charge()`` of the call is what settles; a call that never calls
  it settles the maximum; ``charge(0)`` settles nothing (no transfer) while
  the call's session writes still take effect;
* above the authorized maximum is :class:`ChargeError` (a ``ValueError``),
  raised in the call, and the amount charged before it stands;
* dollars (``"$0.012"``, a ``Decimal`` or a ``float``) are converted with
  the paid asset's decimals, rounded down to whole atomic units; an ``int``
  is atomic units of that asset;
* in an ``exact`` payment the price is fixed: ``charge()`` only checks the
  amount against it;
* outside a paid call (a sign-in, a free call, a unit test calling the
  function) nothing is charged and ``charge()`` returns 0 (an amount that
  is not one still raises); after the call's
  answer left (a streamed body) it is :class:`ChargeError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from .options import to_atomic

__all__ = ["ChargeError", "Meter", "charge", "charge_override", "metering"]

#: The response header the SDK's own FastAPI/Flask middleware reads for the same purpose.
SETTLEMENT_OVERRIDES = "Settlement-Overrides"


class ChargeError(ValueError):
    """A charge the call cannot make: above what the payer authorized, or too late."""


@dataclass
class Meter:
    """One paid call's payment as :func:`charge` sees it (atomic units of ``asset``)."""

    scheme: str
    maximum: int
    decimals: int | None
    asset: str = ""
    charged: int | None = None
    closed: bool = False

    @property
    def metered(self) -> bool:
        """Whether the call settles what it charged (``upto``)."""
        return self.scheme == "upto"

    def atomic(self, amount: object) -> int:
        """``amount`` in atomic units; ``TypeError``/``ValueError`` when it is not an amount."""
        dollars = _amount(amount)
        if isinstance(dollars, int):
            return dollars
        if self.decimals is None:
            raise ChargeError(
                f"charge(): the decimals of {self.asset} are not known, so dollars "
                "cannot be converted; charge an int of atomic units"
            )
        if dollars.adjusted() > 40:  # above any uint256 maximum: do not build the integer
            raise ChargeError(f"charge(): {amount!r} is above what the payer authorized")
        return to_atomic(dollars, self.decimals)

    def charge(self, amount: object) -> int:
        """Set what the call costs (see the module); returns it in atomic units."""
        units = self.atomic(amount)
        if self.closed:
            raise ChargeError("charge(): this call's payment is already settled")
        if units > self.maximum:
            raise ChargeError(
                f"charge(): {amount!r} ({units} atomic units) is above the {self.maximum} "
                "the payer authorized for this call"
            )
        self.charged = units
        return units

    def settlement_overrides(self) -> dict[str, str] | None:
        """What the SDK settles instead of the maximum (``None``: the maximum)."""
        if not self.metered or self.charged is None:
            return None
        return {"amount": str(self.charged)}


_FORMS = "dollars such as '$0.012' (a str, Decimal or float) or an int of atomic units"


def _amount(amount: object) -> int | Decimal:
    """``amount`` checked: an ``int`` of atomic units or a ``Decimal`` of dollars, 0 or more."""
    if isinstance(amount, bool) or not isinstance(amount, int | str | Decimal | float):
        raise TypeError(f"charge() takes {_FORMS}, got {amount!r}")
    if isinstance(amount, int):
        if amount < 0:
            raise ValueError(f"charge(): the amount must not be negative, got {amount!r}")
        return amount
    text = amount.strip() if isinstance(amount, str) else str(amount)
    try:
        dollars = Decimal(text.removeprefix("$"))
    except InvalidOperation:
        raise ValueError(f"charge(): {amount!r} is not an amount; give {_FORMS}") from None
    if not dollars.is_finite() or dollars < 0:
        raise ValueError(f"charge(): {amount!r} is not an amount of 0 or more; give {_FORMS}")
    return dollars


_meter: ContextVar[Meter | None] = ContextVar("aixyz_x402_meter", default=None)


def bind_meter(meter: Meter | None) -> Token[Meter | None]:
    """Make ``meter`` the one :func:`charge` reports to; undo with :func:`unbind_meter`."""
    return _meter.set(meter)


def unbind_meter(token: Token[Meter | None]) -> None:
    """Undo :func:`bind_meter`."""
    _meter.reset(token)


@contextmanager
def metering(meter: Meter | None) -> Iterator[Meter | None]:
    """Make ``meter`` the one :func:`charge` reports to, in this block."""
    token = _meter.set(meter)
    try:
        yield meter
    finally:
        _meter.reset(token)


def charge_override(raw: str) -> int:
    """Charge what a ``Settlement-Overrides`` response header says (the SDK's own form).

    Views ported from the SDK's FastAPI or Flask middleware set
    ``Settlement-Overrides: {"amount": ...}`` on their response instead of
    calling :func:`charge`; the amount is atomic units (``"1000"``), dollars
    (``"$0.001"``) or a percentage of the maximum (``"50%"``). The same rules
    apply; a header that says none of these is :class:`ChargeError`.
    """
    import json
    import re

    try:
        amount = json.loads(raw)["amount"]
    except (ValueError, KeyError, TypeError):
        raise ChargeError(f'{SETTLEMENT_OVERRIDES} is not {{"amount": ...}}: {raw!r}') from None
    text = str(amount).strip()
    meter = _meter.get()
    percent = re.fullmatch(r"(\d+(?:\.\d{1,2})?)%", text)
    if percent is not None:
        maximum = 0 if meter is None else meter.maximum
        return charge(int(Decimal(percent.group(1)) * maximum / 100))
    if re.fullmatch(r"\d+", text):
        return charge(int(text))
    if text.startswith("$"):
        return charge(text)
    raise ChargeError(f"{SETTLEMENT_OVERRIDES} amount {amount!r} is not atomic units, $ or %")


def charge(amount: str | int | Decimal | float) -> int:
    """Report what this paid call used; the ``upto`` payment settles that much.

    ``"$0.012"`` (dollars of the paid asset) or an ``int`` of atomic units.
    Returns the amount in atomic units (0 outside a paid call). Raises
    :class:`ChargeError` above the authorized maximum; see the module.
    """
    meter = _meter.get()
    if meter is None:
        _amount(amount)  # a wrong amount is wrong in a unit test too
        return 0
    return meter.charge(amount)

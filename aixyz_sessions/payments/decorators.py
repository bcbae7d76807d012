"""``@paid``: mark a view as costing an x402 payment.

The decorator only marks the view; :class:`~aixyz_sessions.payments.middleware.
X402Middleware` does the work (402, verification, session binding,
settlement). A paid view reached without the middleware having verified a
payment raises ``ImproperlyConfigured`` instead of serving for free.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest

from .conf import check_address, check_network

__all__ = ["PAID_ATTR", "VERIFIED_ATTR", "PaidSpec", "paid", "paid_spec_of"]

PAID_ATTR = "_aixyz_x402_paid"
VERIFIED_ATTR = "_aixyz_x402_verified"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class PaidSpec:
    """What a paid view costs; ``None`` fields come from ``AIXYZ_X402``."""

    price: str
    network: str | None = None
    pay_to: str | None = None
    description: str | None = None


def _check_price(price: object) -> str:
    if isinstance(price, bool) or not isinstance(price, str | int | float | Decimal):
        raise TypeError(f"paid(): price must be a str like '$0.01', got {price!r}")
    text = str(price).strip()
    try:
        amount = Decimal(text.removeprefix("$").replace(",", "").strip())
    except InvalidOperation:
        raise ValueError(
            f"paid(): price {price!r} is not a dollar amount such as '$0.01'"
        ) from None
    if not amount.is_finite() or amount <= 0:
        raise ValueError(f"paid(): price must be positive, got {price!r}")
    return text if text.startswith("$") else f"${text}"


def _find_request(args: tuple[Any, ...]) -> HttpRequest | None:
    for arg in args[:2]:
        if isinstance(arg, HttpRequest):
            return arg
    return None


def _refuse() -> ImproperlyConfigured:
    return ImproperlyConfigured(
        "A @paid view ran without a verified payment: add "
        "'aixyz_sessions.payments.middleware.X402Middleware' to MIDDLEWARE."
    )


def paid(
    price: str | int | float | Decimal,
    *,
    network: str | None = None,
    pay_to: str | None = None,
    description: str | None = None,
) -> Callable[[F], F]:
    """Mark a view as paid: ``@paid("$0.01")``.

    Works on sync and async function views, and on class-based views via
    ``method_decorator(paid("$0.01"), name="get")`` (or ``name="dispatch"``
    for every method). ``network`` and ``pay_to`` override ``AIXYZ_X402``
    for this view. Arguments are checked now, at import time.
    """
    spec = PaidSpec(
        price=_check_price(price),
        network=None if network is None else check_network(network, what="paid(network=...)"),
        pay_to=None if pay_to is None else check_address(pay_to, what="paid(pay_to=...)"),
        description=description,
    )

    def decorate(view: F) -> F:
        wrapper: Callable[..., Any]
        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                request = _find_request(args)
                if request is not None and not getattr(request, VERIFIED_ATTR, False):
                    raise _refuse()
                return await view(*args, **kwargs)

            wrapper = markcoroutinefunction(async_wrapper)
        else:

            @functools.wraps(view)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                request = _find_request(args)
                if request is not None and not getattr(request, VERIFIED_ATTR, False):
                    raise _refuse()
                return view(*args, **kwargs)

            wrapper = sync_wrapper
        setattr(wrapper, PAID_ATTR, spec)
        return wrapper  # type: ignore[return-value]

    return decorate


def paid_spec_of(view: Callable[..., Any], method: str) -> PaidSpec | None:
    """The :class:`PaidSpec` of a resolved view for an HTTP ``method``, if any.

    Looks at the view function, then (class-based views) at the handler for
    ``method`` and at ``dispatch``.
    """
    spec = getattr(view, PAID_ATTR, None)
    if isinstance(spec, PaidSpec):
        return spec
    view_class = getattr(view, "view_class", None)
    if view_class is None:
        return None
    names = [method.lower(), "dispatch"]
    if names[0] == "head" and not hasattr(view_class, "head"):
        names.insert(1, "get")  # View.setup() serves HEAD with get()
    for name in names:
        spec = getattr(getattr(view_class, name, None), PAID_ATTR, None)
        if isinstance(spec, PaidSpec):
            return spec
    return None

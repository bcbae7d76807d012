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

__all__ = [
    "PAID_ATTR",
    "PRICE_OF_ATTR",
    "VERIFIED_ATTR",
    "PaidSpec",
    "PriceOf",
    "check_price",
    "paid",
    "paid_spec_of",
    "priced_per_request",
]

PAID_ATTR = "_aixyz_x402_paid"
PRICE_OF_ATTR = "_aixyz_x402_price_of"
VERIFIED_ATTR = "_aixyz_x402_verified"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class PaidSpec:
    """What a paid view costs; ``None`` fields come from ``AIXYZ_X402``."""

    price: str
    network: str | None = None
    pay_to: str | None = None
    description: str | None = None


def check_price(price: object, *, what: str = "paid()") -> str:
    """Normalise a price to ``"$<amount>"``; ``TypeError``/``ValueError`` if it is not one."""
    if isinstance(price, bool) or not isinstance(price, str | int | float | Decimal):
        raise TypeError(f"{what}: price must be a str like '$0.01', got {price!r}")
    text = str(price).strip()
    try:
        amount = Decimal(text.removeprefix("$").replace(",", "").strip())
    except InvalidOperation:
        raise ValueError(
            f"{what}: price {price!r} is not a dollar amount such as '$0.01'"
        ) from None
    if not amount.is_finite() or amount <= 0:
        raise ValueError(f"{what}: price must be positive, got {price!r}")
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

    A paid request is exempt from CSRF checks (its signed payment authorises
    it; browsers cannot send the payment header cross-site without CORS), so
    a ``POST`` view works for real clients with ``CsrfViewMiddleware`` on.
    """
    spec = PaidSpec(
        price=check_price(price),
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


#: ``(request, resolver_match_kwargs) -> PaidSpec | None``: a view's price for one request.
PriceOf = Callable[[HttpRequest, dict[str, Any]], PaidSpec | None]


def priced_per_request(price_of: PriceOf) -> Callable[[F], F]:
    """Mark a view whose price depends on the request (for example on a URL argument).

    ``price_of(request, kwargs)`` gets the request and the URL resolver's
    keyword arguments and returns a :class:`PaidSpec`, or ``None`` for a free
    request. The middleware asks it before the view runs. Unlike
    :func:`paid`, the view itself must refuse to serve a paid request that
    the middleware did not verify (``getattr(request, VERIFIED_ATTR, False)``).
    """

    def decorate(view: F) -> F:
        setattr(view, PRICE_OF_ATTR, price_of)
        return view

    return decorate


def paid_spec_of(
    view: Callable[..., Any],
    method: str,
    request: HttpRequest | None = None,
    kwargs: dict[str, Any] | None = None,
) -> PaidSpec | None:
    """The :class:`PaidSpec` of a resolved view for an HTTP ``method``, if any.

    Looks at the view function, then at a per-request price
    (:func:`priced_per_request`, asked only when ``request`` is given), then
    (class-based views) at the handler for ``method`` and at ``dispatch``.
    """
    spec = getattr(view, PAID_ATTR, None)
    if isinstance(spec, PaidSpec):
        return spec
    price_of = getattr(view, PRICE_OF_ATTR, None)
    if price_of is not None and request is not None:
        dynamic = price_of(request, kwargs or {})
        return dynamic if isinstance(dynamic, PaidSpec) else None
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

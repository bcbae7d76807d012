"""``@paid``: mark a view as costing an x402 payment.

The decorator marks the view; :class:`~aixyz_sessions.payments.middleware.
X402Middleware` does the work (402, verification, session binding,
settlement). A paid view reached without the middleware having verified a
payment never serves for free: it answers :class:`PaymentNeeded`, which the
middleware turns into the payment flow (this is how views behind django-ninja
or DRF routers, which the middleware cannot see from the URL, are paid too).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

from .conf import X402ConfigError, check_address, check_network
from .options import PriceOption, parse_accepts
from .sign_in import SignInPolicy, check_sign_in

__all__ = [
    "MAY_CHARGE_ATTR",
    "PAID_ATTR",
    "PRICE_OF_ATTR",
    "REFUSED_BEFORE_WORK_ATTR",
    "VERIFIED_ATTR",
    "PaidSpec",
    "PaymentNeeded",
    "PriceOf",
    "check_price",
    "may_charge",
    "paid",
    "paid_spec_of",
    "priced_per_request",
    "refused_before_work",
    "sign_in_required",
]

PAID_ATTR = "_aixyz_x402_paid"
PRICE_OF_ATTR = "_aixyz_x402_price_of"
#: Set on a request by :func:`paid_spec_of` (the middleware's look) to the price
#: function that found it free, so that the view does not ask that function again.
FREE_BY_ATTR = "_aixyz_x402_free_by"
#: Set by :func:`priced_per_request`: whether the view can charge in this project.
MAY_CHARGE_ATTR = "_aixyz_x402_may_charge"
VERIFIED_ATTR = "_aixyz_x402_verified"
REFUSED_BEFORE_WORK_ATTR = "_aixyz_x402_refused_before_work"

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R", bound=HttpResponse)


def refused_before_work(response: R) -> R:
    """Mark a paid view's error answer as a refusal made before any of its work.

    A paid request whose view has started spends its payment authorization,
    whether or not it settles: a view that fails cannot be run again for free
    with the same signed payment. A view that refuses the request before it
    does anything (arguments it cannot use, a thing that does not exist)
    returns its 4xx answer through this function instead; the middleware then
    gives the authorization back, so the client may correct the request and
    pay with the same signature. A 2xx answer is settled whatever it carries.
    """
    setattr(response, REFUSED_BEFORE_WORK_ATTR, True)
    return response


@dataclass(frozen=True)
class PaidSpec:
    """What a paid view costs; ``None`` fields come from ``AIXYZ_X402``.

    ``sign_in`` lets a returning payer in with a signed ``SIGN-IN-WITH-X``
    instead of a payment (see :mod:`~aixyz_sessions.payments.sign_in`);
    ``price=""`` with ``sign_in="required"`` takes no payment at all, only a
    sign-in. ``resource`` names what a payment or sign-in is for: a tool's
    ``"tool:<name>"`` (the same on every transport), else the request path.
    ``payment_only`` sells the resource here for a payment alone, taking and
    offering no sign-in, while a settled payment is still recorded for
    ``sign_in`` (an A2A message that invokes a tool: the tool's sign-in opens
    it on the tool transports, not on ``/agent``).
    """

    price: str
    network: str | None = None
    pay_to: str | None = None
    description: str | None = None
    sign_in: SignInPolicy | None = None
    resource: str | None = None
    payment_only: bool = False
    #: The payment options, in order (``@paid(accepts=...)``, ``upto=``); empty: one
    #: ``exact`` option of ``price`` on ``network`` to ``pay_to``.
    accepts: tuple[PriceOption, ...] = ()
    #: Declared without a price (``@paid()``): offers ``AIXYZ_X402["ACCEPTS"]``'s own prices.
    defaults: bool = False

    def offered(self) -> tuple[PriceOption, ...] | None:
        """What :func:`~aixyz_sessions.payments.options.resolve` offers: ``None`` for the
        ACCEPTS entries' prices (``@paid()``), else :meth:`options`."""
        return None if self.defaults else self.options()

    def options(self) -> tuple[PriceOption, ...]:
        """What the route accepts, as declared (see :mod:`~aixyz_sessions.payments.options`)."""
        if self.accepts:
            return self.accepts
        if not self.price:
            return ()
        return (PriceOption(price=self.price, network=self.network, pay_to=self.pay_to),)

    @property
    def charges(self) -> bool:
        """Whether a payment is taken (``False``: sign-in only)."""
        return bool(self.price) or bool(self.accepts) or self.defaults

    def most_dollars(self) -> Decimal | None:
        """The highest dollar price among the options (``None``: none is in dollars)."""
        return max((o.dollars for o in self.options() if o.dollars is not None), default=None)

    @property
    def metered(self) -> bool:
        """Whether some option settles what the call used (``upto``)."""
        return any(option.metered for option in self.options())

    @property
    def label(self) -> str:
        """The price in words: ``$0.01``, ``up to $0.05``, ``$0.01 on eip155:8453 or ...``."""
        if self.defaults:
            return "a price of AIXYZ_X402['ACCEPTS']"
        return " or ".join(option.label() for option in self.options())

    @property
    def takes_sign_in(self) -> bool:
        """Whether a returning payer's sign-in is taken (and offered) instead of a payment."""
        return self.sign_in is not None and not self.payment_only


def check_price(price: object, *, what: str = "paid()") -> str:
    """Normalise a price to ``"$<amount>"``; ``TypeError``/``ValueError`` if it is not one."""
    if isinstance(price, bool) or not isinstance(price, str | int | float | Decimal):
        raise TypeError(f"{what}: price must be a str like '$0.01', got {price!r}")
    text = str(price).strip()
    if "," in text:
        # "$0,001" is a tenth of a cent with a decimal comma and a dollar with a
        # thousands separator: refused, rather than guessed (and the SDK, which
        # parses the price again, takes neither).
        raise ValueError(
            f"{what}: price {price!r} has a comma; write dollars with a decimal point "
            "and no separators, such as '$0.001' or '$1500'"
        )
    try:
        amount = Decimal(text.removeprefix("$").strip())
    except InvalidOperation:
        raise ValueError(
            f"{what}: price {price!r} is not a dollar amount such as '$0.01'"
        ) from None
    if not amount.is_finite() or amount <= 0:
        raise ValueError(f"{what}: price must be positive, got {price!r}")
    return text if text.startswith("$") else f"${text}"


def _find_request(args: tuple[Any, ...]) -> HttpRequest | None:
    """The Django request among a view's first arguments (``self`` may come first).

    A Django REST framework ``Request`` wraps it: DRF documents ``_request``
    as the way to the underlying ``HttpRequest``.
    """
    for arg in args[:2]:
        if isinstance(arg, HttpRequest):
            return arg
        inner = getattr(arg, "_request", None)
        if isinstance(inner, HttpRequest):
            return inner
    return None


class PaymentNeeded(HttpResponse):
    """What a ``@paid`` view answers when it is called without a verified payment.

    ``X402Middleware`` finds most paid views from the URL before they run;
    a view behind a framework's own dispatcher (a django-ninja operation, a
    DRF viewset action) it finds only when the view answers this. The
    middleware then runs the payment flow (402, or verify and call the view
    again inside the payer's session, then settle) and the client never sees
    this response. Without the middleware it reaches the client: a JSON 500
    that says what is missing, and nothing ran.
    """

    status_code = 500

    def __init__(self, spec: PaidSpec) -> None:
        super().__init__(
            json.dumps(
                {
                    "error": "server_misconfigured",
                    "message": "this view is paid but X402Middleware is not in MIDDLEWARE",
                }
            ),
            content_type="application/json",
        )
        self.spec = spec


def _verified(args: tuple[Any, ...]) -> bool:
    """Whether the middleware verified a payment for the request among ``args``.

    A view called without any request (a unit test calling the function) is
    let through: there is no payment to check and no session bound.
    """
    request = _find_request(args)
    return request is None or bool(getattr(request, VERIFIED_ATTR, False))


def paid(
    price: str | int | float | Decimal | None = None,
    *,
    accepts: list[dict[str, Any]] | None = None,
    upto: str | int | float | Decimal | None = None,
    network: str | None = None,
    pay_to: str | None = None,
    description: str | None = None,
    sign_in: SignInPolicy | None = None,
) -> Callable[[F], F]:
    """Mark a view as paid: ``@paid("$0.01")``, ``@paid(upto="$0.05")``, ``@paid(accepts=[...])``.

    Works on sync and async function views, and on class-based views via
    ``method_decorator(paid("$0.01"), name="get")`` (or ``name="dispatch"``
    for every method). ``network`` and ``pay_to`` override ``AIXYZ_X402``
    for this view. Arguments are checked now, at import time.

    Give one of ``price`` (the fixed price, x402 ``exact``), ``upto`` (the
    most a call can cost, x402 ``upto``: the view reports what it used with
    :func:`~aixyz_sessions.payments.charge`) or ``accepts`` (several options,
    offered in order; see :mod:`~aixyz_sessions.payments.options`).

    A paid request is exempt from CSRF checks (its signed payment authorises
    it; browsers cannot send the payment header cross-site without CORS), so
    a ``POST`` view works for real clients with ``CsrfViewMiddleware`` on.

    ``sign_in="after_payment"`` lets a payer who paid for this URL within
    ``AIXYZ_X402["SIGN_IN_WINDOW"]`` come back with a ``SIGN-IN-WITH-X``
    header instead of paying; ``"after_any_payment"``, a payer of any paid
    view or tool here. The 402 then offers the sign-in-with-x extension.
    """
    if sign_in == "required":
        raise X402ConfigError(
            'paid(sign_in="required") would never take the payment',
            id="aixyz_sessions.E108",
            hint="Use @sign_in_required for a view that only needs a proven payer.",
        )
    spec = priced_spec(
        "paid()",
        price=price,
        accepts=accepts,
        upto=upto,
        network=network,
        pay_to=pay_to,
        description=description,
        sign_in=check_sign_in(sign_in, what="paid()"),
        defaults=True,
    )
    return _marking(spec)


def priced_spec(
    what: str,
    *,
    price: object = None,
    accepts: object = None,
    upto: object = None,
    network: str | None = None,
    pay_to: str | None = None,
    description: str | None = None,
    sign_in: SignInPolicy | None = None,
    resource: str | None = None,
    defaults: bool = False,
) -> PaidSpec:
    """The :class:`PaidSpec` of ``price``, ``upto`` or ``accepts`` (exactly one), checked.

    ``defaults=True`` lets none be given: the route offers the prices of
    ``AIXYZ_X402["ACCEPTS"]``'s entries (``@paid()``).

    Shared by ``@paid``, ``@tool`` and the agent's settings. Raises
    ``TypeError``/``ValueError`` for a price that is not one, and
    :class:`X402ConfigError` for options that cannot work.
    """
    given = [
        name
        for name, v in (("price", price), ("upto", upto), ("accepts", accepts))
        if v is not None
    ]
    if not given and defaults and network is None and pay_to is None:
        return PaidSpec(
            price="", description=description, sign_in=sign_in, resource=resource, defaults=True
        )
    if len(given) > 1 or not given:
        raise X402ConfigError(
            f"{what} takes {'at most' if defaults else 'exactly'} one of price, upto and "
            f"accepts; got {', '.join(given) or 'none'}",
            id="aixyz_sessions.E110",
            hint='A fixed price: "$0.01"; a metered one: upto="$0.05"; several options: '
            'accepts=[{"price": "$0.01", "network": "eip155:8453"}, ...]'
            + ("; none: the prices of AIXYZ_X402['ACCEPTS']." if defaults else "."),
        )
    network = None if network is None else check_network(network, what=f"{what}: network")
    pay_to = None if pay_to is None else check_address(pay_to, what=f"{what}: pay_to")
    options: tuple[PriceOption, ...] = ()
    fixed = ""
    if accepts is not None:
        if network is not None or pay_to is not None:
            raise X402ConfigError(
                f"{what}: network and pay_to go inside each of accepts' options",
                id="aixyz_sessions.E110",
                hint='accepts=[{"price": "$0.01", "network": "eip155:8453", "pay_to": "0x..."}]',
            )
        options = parse_accepts(accepts, what=what)
    elif upto is not None:
        options = (
            PriceOption(
                price=check_price(upto, what=what), network=network, pay_to=pay_to, scheme="upto"
            ),
        )
    else:
        fixed = check_price(price, what=what)
    return PaidSpec(
        price=fixed,
        network=network,
        pay_to=pay_to,
        description=description,
        sign_in=sign_in,
        resource=resource,
        accepts=options,
    )


def sign_in_required(
    *, network: str | None = None, description: str | None = None
) -> Callable[[F], F]:
    """Mark a free view that needs a proven payer: ``@sign_in_required()``.

    The client signs in with its wallet (``SIGN-IN-WITH-X``, x402's
    sign-in-with-x extension in auth-only mode: the 402 offers no payment);
    the signer's session is bound as for a paid view, nothing is charged.
    ``network`` (default ``AIXYZ_X402["NETWORK"]``) is the chain the
    signature names.
    """
    spec = PaidSpec(
        price="",
        network=None
        if network is None
        else check_network(network, what="sign_in_required(network=...)"),
        description=description,
        sign_in="required",
    )
    return _marking(spec)


def _marking(spec: PaidSpec) -> Callable[[F], F]:
    """The decorator that marks a view with ``spec`` (and refuses unverified calls)."""

    def decorate(view: F) -> F:
        if getattr(view, PAID_ATTR, None) is not None or hasattr(view, PRICE_OF_ATTR):
            name = getattr(view, "__qualname__", view)
            raise X402ConfigError(
                f"{name} is already marked paid: one view has one price (stacked @paid or "
                "@sign_in_required decorators would leave only the outer one in force)",
                id="aixyz_sessions.E108",
                hint="Keep one @paid(...) (or @sign_in_required()) on the view.",
            )
        wrapper: Callable[..., Any]
        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                if not _verified(args):
                    return PaymentNeeded(spec)
                return await view(*args, **kwargs)

            wrapper = markcoroutinefunction(async_wrapper)
        else:

            @functools.wraps(view)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                if not _verified(args):
                    return PaymentNeeded(spec)
                return view(*args, **kwargs)

            wrapper = sync_wrapper
        setattr(wrapper, PAID_ATTR, spec)
        return wrapper  # type: ignore[return-value]

    return decorate


#: ``(request, resolver_match_kwargs) -> PaidSpec | None``: a view's price for one request.
PriceOf = Callable[[HttpRequest, dict[str, Any]], PaidSpec | None]


def priced_per_request(
    price_of: PriceOf, *, may_charge: Callable[[], bool] | None = None
) -> Callable[[F], F]:
    """Mark a view whose price depends on the request (for example on a URL argument).

    ``price_of(request, kwargs)`` gets the request and the URL resolver's
    keyword arguments and returns a :class:`PaidSpec`, or ``None`` for a free
    request. The middleware asks it before the view runs. Like :func:`paid`,
    the marked view fails closed by itself: a request that ``price_of``
    prices and the middleware did not verify (``X402Middleware`` missing)
    is answered :class:`PaymentNeeded` (a JSON 500 that says so), never
    served. ``may_charge()`` tells the system checks whether this view can
    charge at all in this project (default: it can), so ``E107`` flags it
    when the middleware is missing.
    """

    def decorate(view: F) -> F:
        def refusal(args: tuple[Any, ...], kwargs: dict[str, Any]) -> PaymentNeeded | None:
            request = _find_request(args)
            if request is None or getattr(request, VERIFIED_ATTR, False):
                return None
            if getattr(request, FREE_BY_ATTR, None) is price_of:
                return None  # the middleware asked this function already: free
            spec = price_of(request, kwargs)
            return None if spec is None else PaymentNeeded(spec)

        wrapper: Callable[..., Any]
        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                refused = refusal(args, kwargs)
                return refused if refused is not None else await view(*args, **kwargs)

            wrapper = markcoroutinefunction(async_wrapper)
        else:

            @functools.wraps(view)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                refused = refusal(args, kwargs)
                return refused if refused is not None else view(*args, **kwargs)

            wrapper = sync_wrapper
        setattr(wrapper, PRICE_OF_ATTR, price_of)
        setattr(wrapper, MAY_CHARGE_ATTR, may_charge or _can_charge)
        return wrapper  # type: ignore[return-value]

    return decorate


def _can_charge() -> bool:
    return True


def may_charge(view: Callable[..., Any]) -> bool:
    """Whether a :func:`priced_per_request` view can charge in this project (for checks)."""
    check = getattr(view, MAY_CHARGE_ATTR, None)
    return bool(check()) if callable(check) else True


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
        if isinstance(dynamic, PaidSpec):
            return dynamic
        setattr(request, FREE_BY_ATTR, price_of)
        return None
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

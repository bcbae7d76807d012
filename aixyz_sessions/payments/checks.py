"""System checks for payments (ids ``aixyz_sessions.E1xx`` / ``W1xx``).

``AIXYZ_X402`` itself, a paid view routed without ``X402Middleware``, sign-in
with no origin it could trust, and (``check --deploy``) a facilitator reached
over plain HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core import checks
from django.urls import URLPattern, URLResolver, get_resolver

from .conf import DEFAULT_MAX_PRICE, SETTING, X402ConfigError, config_errors
from .decorators import PRICE_OF_ATTR, PaidSpec, may_charge, paid_spec_of

__all__ = [
    "add_price_source",
    "check_paid_views_have_middleware",
    "check_x402_deployment",
    "check_x402_settings",
    "routed_views",
]

MIDDLEWARE_PATH = "aixyz_sessions.payments.middleware.X402Middleware"


@checks.register("aixyz_sessions")
def check_x402_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Every problem with ``AIXYZ_X402``; a warning for the local facilitator outside DEBUG."""
    value = getattr(settings, SETTING, None)
    if value is None:
        if MIDDLEWARE_PATH in getattr(settings, "MIDDLEWARE", []):
            return [
                checks.Error(
                    f"X402Middleware is installed but {SETTING} is not set",
                    hint=f'{SETTING} = {{"PAY_TO": "0x...", "NETWORK": "eip155:84532", '
                    '"FACILITATOR_URL": "https://x402.org/facilitator"}',
                    id="aixyz_sessions.E100",
                )
            ]
        return []
    messages: list[checks.CheckMessage] = [
        checks.Error(error.msg, hint=error.hint, id=error.id) for error in config_errors(value)
    ]
    if not messages:
        messages.extend(_guard_records(value))
        messages.extend(_sign_in_origin(value))
        messages.extend(_prices_above(value.get("MAX_PRICE", DEFAULT_MAX_PRICE)))
        messages.extend(_offers(value))
    if not messages and value.get("FACILITATOR") == "local" and not settings.DEBUG:
        messages.append(
            checks.Warning(
                f"{SETTING} uses the LocalFacilitator with DEBUG = False: payments are "
                "verified but no money moves",
                hint='Point "FACILITATOR_URL" at a real x402 facilitator in production.',
                id="aixyz_sessions.W101",
            )
        )
    return messages


def _guard_records(value: dict[str, Any]) -> list[checks.CheckMessage]:
    """W104: a custom replay guard that keeps no records (sign-in, payment identifiers)."""
    path = value.get("REPLAY_GUARD")
    if not isinstance(path, str):
        return []  # the store's own guards keep records
    from django.utils.module_loading import import_string

    from ..replay import ReplayGuard

    try:
        target = import_string(path)
    except ImportError:
        return []  # reported when the runtime is built (E106)
    guard_class = target if isinstance(target, type) else type(target)
    if not issubclass(guard_class, ReplayGuard) or (
        guard_class.remember is not ReplayGuard.remember
        and guard_class.recall is not ReplayGuard.recall
    ):
        return []
    return [
        checks.Warning(
            f"{SETTING}['REPLAY_GUARD'] = {path!r} keeps no records: sign-in after a "
            "payment fails and payment identifiers (safe retries) are ignored",
            hint="Implement remember() and recall() on the guard (see "
            "aixyz_sessions.replay.ReplayGuard), or leave REPLAY_GUARD out to use the store's.",
            id="aixyz_sessions.W104",
        )
    ]


def _sign_in_origin(value: dict[str, Any]) -> list[checks.CheckMessage]:
    """W105: sign-in is declared, ``ALLOWED_HOSTS`` takes any host and no ORIGIN is set."""
    from ..hosts import any_host_allowed
    from .sign_in import sign_in_declared

    declared = sign_in_declared() or getattr(settings, "AIXYZ_AGENT", None) is not None
    if value.get("ORIGIN") or not declared or not any_host_allowed():
        return []
    return [
        checks.Warning(
            "sign-in is declared but ALLOWED_HOSTS takes any host ('*') and "
            f"{SETTING}['ORIGIN'] is not set: sign-ins are refused, since a request's "
            "host would prove nothing (a sign-in signed for another site could be used here)",
            hint=f"Set {SETTING}['ORIGIN'] to the public origin clients reach, e.g. "
            "'https://api.example.com', or name your hosts in ALLOWED_HOSTS.",
            id="aixyz_sessions.W105",
        )
    ]


#: What else charges here (tools, the agent), each ``() -> [(what, spec), ...]``:
#: their packages add a source (:func:`add_price_source`), so payments imports none.
_price_sources: list[Callable[[], Iterable[tuple[str, PaidSpec]]]] = []


def add_price_source(source: Callable[[], Iterable[tuple[str, PaidSpec]]]) -> None:
    """Have ``W106`` and ``E112`` look at ``source()``'s ``(what, spec)`` pairs too."""
    if source not in _price_sources:
        _price_sources.append(source)


def _specs() -> Iterator[tuple[str, PaidSpec]]:
    """``(what, spec)`` of every paid view routed, and of every added price source."""
    try:
        patterns = get_resolver().url_patterns
    except Exception:  # Django's own URL checks report a broken URLconf
        patterns = []
    for view in routed_views(patterns):
        for method in ("GET", "POST", "PUT"):
            spec = paid_spec_of(view, method)
            if spec is not None and spec.charges:
                yield f"the view {_view_name(view)}", spec
                break
    for source in _price_sources:
        yield from source()


def _offers(value: dict[str, Any]) -> list[checks.CheckMessage]:
    """E112: a route whose options, with the project's defaults filled in, repeat one."""
    from .conf import parse_config
    from .options import resolve

    config = parse_config(value)
    messages: list[checks.CheckMessage] = []
    for what, spec in _specs():
        try:
            resolve(spec.offered(), config.defaults(), config.pay_to)
        except X402ConfigError as exc:
            messages.append(checks.Error(f"{what}: {exc.msg}", hint=exc.hint, id=exc.id))
    return messages


def _prices_above(ceiling: str) -> list[checks.CheckMessage]:
    """W106: a price above ``MAX_PRICE`` (``paid("10000")`` is $10,000, not 10,000 units)."""
    from decimal import Decimal, InvalidOperation

    def dollars(price: str) -> Decimal:
        return Decimal(price.strip().removeprefix("$"))

    try:
        limit = dollars(ceiling)
    except (InvalidOperation, AttributeError):
        return []
    messages: list[checks.CheckMessage] = []
    for what, spec in _specs():
        for option in spec.options():
            amount = option.dollars  # None: atomic units of a named token, no dollar value
            if amount is not None and amount > limit:
                messages.append(
                    checks.Warning(
                        f"{what} costs {option.label()} a call, above {SETTING}['MAX_PRICE'] "
                        f"({ceiling}); prices are dollars, and the 402 shows them in the "
                        f"token's atomic units ({amount * 10**6:f} for USDC)",
                        hint="Write the price in dollars ('$0.01' is one cent), or raise "
                        f"{SETTING}['MAX_PRICE'] if you mean it.",
                        id="aixyz_sessions.W106",
                    )
                )
    return messages


@checks.register("aixyz_sessions", deploy=True)
def check_x402_deployment(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``check --deploy``: a facilitator reached over plain HTTP.

    Verification answers decide who the payer is and whether a call was paid:
    over plain HTTP anyone on the path can forge them.
    """
    value = getattr(settings, SETTING, None)
    if not isinstance(value, dict) or config_errors(value):
        return []  # nothing to add to the errors above
    url = value.get("FACILITATOR_URL")
    if isinstance(url, str) and urlsplit(url).scheme == "http":
        return [
            checks.Warning(
                f"{SETTING}['FACILITATOR_URL'] is plain http: {url}",
                hint="A real facilitator is reached over https://; its answers say who paid, "
                "and over plain HTTP they can be forged on the way.",
                id="aixyz_sessions.W102",
            )
        ]
    return []


def routed_views(patterns: list[Any]) -> Iterator[Callable[..., Any]]:
    """Every view callable in a URLconf, included ones too."""
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from routed_views(pattern.url_patterns)
        elif isinstance(pattern, URLPattern):
            yield pattern.callback


def _needs_payment(view: Callable[..., Any]) -> bool:
    """A ``@paid`` view (function or class-based), or a view priced per request that can
    charge here (the tools view with a paid tool, the agent's view, yours)."""
    if getattr(view, PRICE_OF_ATTR, None) is not None:
        return may_charge(view)
    return any(paid_spec_of(view, method) is not None for method in ("GET", "POST", "PUT"))


@checks.register("aixyz_sessions", checks.Tags.urls)
def check_paid_views_have_middleware(
    app_configs: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """A paid view (or paid tool over HTTP) with ``X402Middleware`` missing from MIDDLEWARE."""
    if MIDDLEWARE_PATH in getattr(settings, "MIDDLEWARE", []):
        return []
    try:
        patterns = get_resolver().url_patterns
    except Exception:  # Django's own URL checks report a broken URLconf
        return []
    paid = sorted({_view_name(view) for view in routed_views(patterns) if _needs_payment(view)})
    if not paid:
        return []
    return [
        checks.Error(
            f"paid views are routed but X402Middleware is not in MIDDLEWARE: {', '.join(paid)}",
            hint=f"Add {MIDDLEWARE_PATH!r} to MIDDLEWARE: without it nobody can pay "
            "for these views (they answer 500 instead of 402).",
            id="aixyz_sessions.E107",
        )
    ]


def _view_name(view: Callable[..., Any]) -> str:
    target = getattr(view, "view_class", view)
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', target)}"

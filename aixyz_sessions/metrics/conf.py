"""Reading ``AIXYZ_METRICS``: whether Prometheus metrics are kept, and who may read them.

::

    AIXYZ_METRICS = {
        "TOKEN": os.environ["METRICS_TOKEN"],  # scrapers send "Authorization: Bearer <TOKEN>"
        "STAFF": True,                         # a signed-in staff user may read them too
    }

Absent (the default), nothing is counted and ``/metrics`` answers 404: the
numbers say how much a server earns, which is nobody's business but its
operator's. A setting that cannot work is ``aixyz_sessions.E300``; the
setting without ``prometheus-client`` installed is ``E301``.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from ..conf import SettingError
from ..lazy import Lazy, lazy_setting

__all__ = ["SETTING", "MetricsConfig", "MetricsConfigError", "get_metrics_config", "parse"]

SETTING = "AIXYZ_METRICS"
_KEYS = frozenset({"TOKEN", "STAFF"})
#: Shorter bearer tokens are guessable by a scraper left running.
MIN_TOKEN_LENGTH = 16
_HINT = (
    f'{SETTING} = {{"TOKEN": "<at least {MIN_TOKEN_LENGTH} random characters>", "STAFF": True}} '
    "(see docs/operations.md)"
)


class MetricsConfigError(SettingError):
    """``AIXYZ_METRICS`` cannot work."""


@dataclass(frozen=True)
class MetricsConfig:
    """The parsed setting: ``token`` a scraper sends as a bearer token (``None``: none
    may), ``staff`` whether a signed-in staff user may read the metrics."""

    token: str | None
    staff: bool


def _error(msg: str) -> MetricsConfigError:
    return MetricsConfigError(msg, id="aixyz_sessions.E300", hint=_HINT)


def parse(value: object) -> MetricsConfig | None:
    """The setting's :class:`MetricsConfig`; ``None`` when it is not set (metrics off)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _error(f"{SETTING} must be a dict, not {type(value).__name__}")
    unknown = sorted(str(key) for key in value if key not in _KEYS)
    if unknown:
        raise _error(f"{SETTING} has keys it does not know: {', '.join(unknown)}")
    token = value.get("TOKEN")
    if token is not None:
        if not isinstance(token, str) or len(token.strip()) < MIN_TOKEN_LENGTH:
            raise _error(
                f"{SETTING}['TOKEN'] must be a str of at least {MIN_TOKEN_LENGTH} characters"
            )
        if not token.isascii() or not token.isprintable() or token != token.strip():
            raise _error(f"{SETTING}['TOKEN'] must be printable ASCII without outer spaces")
    staff = value.get("STAFF", True)
    if not isinstance(staff, bool):
        raise _error(f"{SETTING}['STAFF'] must be True or False")
    if token is None and not staff:
        raise _error(f"{SETTING} lets nobody read the metrics: give a TOKEN or keep STAFF on")
    return MetricsConfig(token=token, staff=staff)


def _build() -> tuple[MetricsConfig | None]:
    # In a tuple: a Lazy builds again while its value is None, and "off" is asked
    # on every paid call.
    try:
        return (parse(getattr(settings, SETTING, None)),)
    except MetricsConfigError:
        return (None,)  # reported by the system check; counting nothing is the safe side


_config: Lazy[tuple[MetricsConfig | None]] = lazy_setting(SETTING, build=_build)


def get_metrics_config() -> MetricsConfig | None:
    """The parsed ``AIXYZ_METRICS``; ``None`` when metrics are off (or the setting is wrong)."""
    return _config.get()[0]

"""Reading ``AIXYZ_SESSION_STORE`` and holding the one configured store.

The setting takes one of three forms::

    AIXYZ_SESSION_STORE = "aixyz_sessions.stores.memory.InMemorySessionStore"  # a class
    AIXYZ_SESSION_STORE = {"BACKEND": "...CacheSessionStore", "OPTIONS": {"cache_alias": "x"}}
    AIXYZ_SESSION_STORE = "myproject.sessions.store"   # a ready instance or a factory

A setting that cannot work raises :class:`StoreConfigError`, which the system
check (``manage.py check``) reports with an id and a hint.
"""

from __future__ import annotations

import inspect
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from .lazy import Lazy, lazy_setting
from .stores.base import SessionStore

SETTING = "AIXYZ_SESSION_STORE"
DEFAULT_STORE = "aixyz_sessions.stores.memory.InMemorySessionStore"

__all__ = [
    "DEFAULT_STORE",
    "SETTING",
    "SettingError",
    "StoreConfigError",
    "build_store",
    "get_store",
]


class SettingError(ImproperlyConfigured):
    """A setting of this app cannot work; carries the system-check id and a hint."""

    def __init__(self, msg: str, *, id: str, hint: str) -> None:
        super().__init__(f"{msg} ({hint}) [{id}]")
        self.msg = msg
        self.id = id
        self.hint = hint


class StoreConfigError(SettingError):
    """``AIXYZ_SESSION_STORE`` cannot give a store."""


_FORMS_HINT = (
    f"Set {SETTING} to a SessionStore class path such as {DEFAULT_STORE!r}, "
    'a dict {"BACKEND": "<class path>", "OPTIONS": {...}}, '
    "or the dotted path of a SessionStore instance or zero-argument factory."
)


#: Packages an optional extra of this app brings, by the module a store imports.
EXTRAS = {"redis": "redis", "psycopg": "postgres", "psycopg2": "postgres", "openai": "agent"}


def missing_extra(exc: BaseException) -> str | None:
    """``pip install "aixyz-sessions[<extra>]"`` when ``exc`` is a missing extra's package."""
    name = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    extra = EXTRAS.get((name or "").split(".")[0])
    return None if extra is None else f'pip install "aixyz-sessions[{extra}]"'


def _import(path: str) -> Any:
    try:
        return import_string(path)
    except ImportError as exc:
        install = missing_extra(exc)
        raise StoreConfigError(
            f"{SETTING} names {path!r}, which cannot be imported: {exc}",
            id="aixyz_sessions.E001",
            hint=f"{path} needs a package that is not installed: {install}."
            if install
            else _FORMS_HINT,
        ) from exc


def _not_a_store(path: str, what: object) -> StoreConfigError:
    return StoreConfigError(
        f"{SETTING} names {path!r}, which is {what!r}, not a SessionStore",
        id="aixyz_sessions.E002",
        hint="Point it at a subclass of aixyz_sessions.SessionStore (or an instance of one). "
        + _FORMS_HINT,
    )


def _instantiate(path: str, cls: type[SessionStore], options: dict[str, Any]) -> SessionStore:
    try:
        return cls(**options)
    except (TypeError, ValueError) as exc:
        raise StoreConfigError(
            f"{SETTING}: {path} rejected its OPTIONS {options!r}: {exc}",
            id="aixyz_sessions.E003",
            hint=f"Pass only the keyword arguments {cls.__name__}() accepts, with valid values.",
        ) from exc


def build_store(value: object) -> SessionStore:
    """Make a store from a value of the ``AIXYZ_SESSION_STORE`` setting."""
    if isinstance(value, dict):
        unknown = set(value) - {"BACKEND", "OPTIONS"}
        backend, options = value.get("BACKEND"), value.get("OPTIONS", {})
        if unknown or not isinstance(backend, str) or not isinstance(options, dict):
            raise StoreConfigError(
                f"{SETTING} dict must have a str 'BACKEND' and an optional dict 'OPTIONS', "
                f"got {value!r}",
                id="aixyz_sessions.E004",
                hint=_FORMS_HINT,
            )
        cls = _import(backend)
        if not (inspect.isclass(cls) and issubclass(cls, SessionStore)):
            raise _not_a_store(backend, cls)
        return _instantiate(backend, cls, options)
    if not isinstance(value, str):
        raise StoreConfigError(
            f"{SETTING} must be a str or a dict, got {type(value).__name__}",
            id="aixyz_sessions.E004",
            hint=_FORMS_HINT,
        )
    target = _import(value)
    if isinstance(target, SessionStore):
        return target
    if inspect.isclass(target):
        if not issubclass(target, SessionStore):
            raise _not_a_store(value, target)
        return _instantiate(value, target, {})
    if callable(target):
        try:
            store = target()
        except Exception as exc:
            raise StoreConfigError(
                f"{SETTING}: the factory {value} raised {type(exc).__name__}: {exc}",
                id="aixyz_sessions.E005",
                hint="A factory must build a SessionStore when called with no arguments.",
            ) from exc
        if not isinstance(store, SessionStore):
            raise _not_a_store(f"{value}()", store)
        return store
    raise _not_a_store(value, target)


_store: Lazy[SessionStore] = lazy_setting(
    SETTING, build=lambda: build_store(getattr(settings, SETTING, DEFAULT_STORE))
)


def get_store() -> SessionStore:
    """The process's configured session store, built once on first use."""
    return _store.get()


def reset_store() -> None:
    """Forget the built store so the next :func:`get_store` reads the setting again."""
    _store.reset()


# Cursors are signed with SECRET_KEY (stores.base keeps the codec, and knows no signals).
@receiver(setting_changed)
def _on_secret_key_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "SECRET_KEY":
        from .stores.base import reset_cursor_codec

        reset_cursor_codec()

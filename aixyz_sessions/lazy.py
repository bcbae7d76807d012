"""``Lazy``: one value per process, built on first use; ``lazy_setting``: one built from settings.

The configured store, the parsed ``AIXYZ_X402`` and ``AIXYZ_AGENT`` and the
payment runtime are each built once, thread-safely, and forgotten when a
setting they are built from changes (Django's ``setting_changed``, sent by
``override_settings`` and pytest-django's ``settings`` fixture).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from django.core.signals import setting_changed

T = TypeVar("T")


class Lazy(Generic[T]):
    """Builds its value with ``build()`` on the first :meth:`get`; :meth:`reset` forgets it."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._value: T | None = None

    def get(self) -> T:
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._build()
                value = self._value
        return value

    def reset(self) -> None:
        with self._lock:
            self._value = None


class _SettingLazy(Lazy[T]):
    """A :class:`Lazy` that resets itself when one of ``settings`` changes."""

    def __init__(self, build: Callable[[], T], settings: frozenset[str]) -> None:
        super().__init__(build)
        self.settings = settings
        # A weak reference to a bound method: connected as long as this object lives
        # (a module global), like a module-level ``@receiver`` function.
        setting_changed.connect(self._on_setting_changed)

    def _on_setting_changed(self, *, setting: str, **kwargs: Any) -> None:
        if setting in self.settings:
            self.reset()


def lazy_setting(*settings: str, build: Callable[[], T]) -> Lazy[T]:
    """A :class:`Lazy` of ``build()`` that is forgotten when any of ``settings`` changes.

    ::

        _config = lazy_setting("AIXYZ_X402", build=lambda: parse_config(settings.AIXYZ_X402))
    """
    return _SettingLazy(build, frozenset(settings))

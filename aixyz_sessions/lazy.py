"""``Lazy``: one value per process, built from settings on first use.

The configured store, the parsed ``AIXYZ_X402`` and the payment runtime are
each built once, thread-safely, and forgotten when their setting changes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

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

"""Keep the ``mcp`` SDK from configuring the host's root logger.

Two places in the SDK would take over a Django process's logging:

* ``FastMCP()`` calls ``logging.basicConfig`` while it is constructed
  (:func:`host_logging_untouched` wraps that);
* ``mcp.shared.session`` (and ``mcp.server.sse``) log through the *module
  level* ``logging.debug()``/``warning()``... functions, which call
  ``logging.basicConfig()`` whenever the root logger has no handler: the
  first MCP request that ends its session ("Read stream closed by client")
  then adds a stderr handler to the root logger, and from that moment every
  Django log line that propagates to the root prints twice.

:func:`route_module_logging` points those modules' ``logging`` name at a
facade whose module-level functions log through a named logger
(``mcp.shared.session``...) instead: the records are the same and still
propagate to whatever the host configured, but ``basicConfig`` never runs.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

__all__ = ["MODULES", "host_logging_untouched", "route_module_logging"]

#: SDK modules that log through ``logging.<level>()`` at module level.
MODULES = ("mcp.shared.session", "mcp.server.sse")
_LEVEL_FUNCTIONS = ("debug", "info", "warning", "warn", "error", "exception", "critical", "log")
_lock = threading.Lock()


class _NamedLogging:
    """The ``logging`` module, but its level functions log through one named logger."""

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)
        for function in _LEVEL_FUNCTIONS:
            method = "warning" if function == "warn" else function
            setattr(self, function, getattr(self._logger, method))

    def __getattr__(self, name: str) -> Any:
        return getattr(logging, name)


def route_module_logging() -> None:
    """Point :data:`MODULES`' ``logging`` at a named-logger facade (idempotent)."""
    with _lock:
        for name in MODULES:
            try:
                module: ModuleType = importlib.import_module(name)
            except ImportError:  # pragma: no cover - an SDK layout without it
                continue
            if getattr(module, "logging", None) is logging:
                module.logging = _NamedLogging(name)  # type: ignore[attr-defined]


@contextmanager
def host_logging_untouched() -> Iterator[None]:
    """Keep ``FastMCP()`` from configuring the root logger while it is built.

    Its constructor calls ``logging.basicConfig`` (with a rich handler when
    ``rich`` is installed), which would take over the logging of the whole
    Django process whenever the root logger has no handler yet.
    """
    root = logging.getLogger()
    placeholder = logging.NullHandler()
    needed = not root.handlers
    if needed:
        root.addHandler(placeholder)
    try:
        yield
    finally:
        if needed:
            root.removeHandler(placeholder)

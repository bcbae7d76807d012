"""The store check: an ``AIXYZ_SESSION_STORE`` that cannot work fails ``manage.py check``.

The store reports on its own configuration (``SessionStore.check()``).
"""

from __future__ import annotations

from typing import Any

from django.core import checks

from ..conf import StoreConfigError, get_store


@checks.register("aixyz_sessions")
def check_session_store(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Build the configured store and let it report on its own configuration."""
    try:
        store = get_store()
    except StoreConfigError as exc:
        return [checks.Error(exc.msg, hint=exc.hint, id=exc.id)]
    return list(store.check())

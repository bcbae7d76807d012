"""The admin: "Sessions" for every store, and ``SessionEntry`` for the database store.

Django's admin autodiscovery imports this package; importing it registers
both ``ModelAdmin`` classes:

* "Sessions" (``StoredSession``, :mod:`.sessions`) browses whatever store is
  configured: payers, their keys and entries, with delete and erase; what
  those pages ask of the store is in :mod:`.store_access`;
* ``SessionEntry`` (:mod:`.entries`) is the database store's table, listed on
  the index only while that store is configured.
"""

from __future__ import annotations

from django.contrib import admin

from ..models import SessionEntry, StoredSession
from .entries import EDITABLE_SETTING, PREVIEW_CHARS, ExpiryFilter, SessionEntryAdmin
from .sessions import StoredSessionAdmin

__all__ = [
    "EDITABLE_SETTING",
    "PREVIEW_CHARS",
    "ExpiryFilter",
    "SessionEntryAdmin",
    "StoredSessionAdmin",
]

admin.site.register(StoredSession, StoredSessionAdmin)
admin.site.register(SessionEntry, SessionEntryAdmin)

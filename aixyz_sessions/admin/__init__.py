"""The admin: "Sessions" for every store, ``SessionEntry`` for the database store, channels.

Django's admin autodiscovery imports this package; importing it registers
the three ``ModelAdmin`` classes:

* "Sessions" (``StoredSession``, :mod:`.sessions`) browses whatever store is
  configured: payers, their keys and entries, with delete and erase; what
  those pages ask of the store is in :mod:`.store_access`;
* ``SessionEntry`` (:mod:`.entries`) is the database store's table, listed on
  the index only while that store is configured;
* "Payment channels" (``Channel``, :mod:`.channels`) shows the x402 payment
  channels of whichever channel storage is configured, read-only, listed on
  the index only while ``AIXYZ_X402["BATCH_SETTLEMENT"]`` is set.
"""

from __future__ import annotations

from django.contrib import admin

from ..models import Channel, SessionEntry, StoredSession
from .channels import ChannelAdmin
from .entries import EDITABLE_SETTING, PREVIEW_CHARS, ExpiryFilter, SessionEntryAdmin
from .sessions import StoredSessionAdmin

__all__ = [
    "EDITABLE_SETTING",
    "PREVIEW_CHARS",
    "ChannelAdmin",
    "ExpiryFilter",
    "SessionEntryAdmin",
    "StoredSessionAdmin",
]

admin.site.register(StoredSession, StoredSessionAdmin)
admin.site.register(SessionEntry, SessionEntryAdmin)
admin.site.register(Channel, ChannelAdmin)

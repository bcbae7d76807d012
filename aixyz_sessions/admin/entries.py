"""``SessionEntryAdmin``: the database store's table in the admin.

``SessionEntry`` is the database store's table: look at sessions, find a
payer's keys, purge what expired. It is listed on the admin's index only
while the configured store is that table (with another store it would only
show an empty table beside the payers that *Sessions* finds, see
:mod:`.sessions`).

Session values belong to the payers who wrote them, so the admin shows them
read-only unless ``AIXYZ_SESSIONS_ADMIN_EDITABLE = True``; adding entries by
hand is off for the same reason (the store writes them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.db.models.functions import Substr
from django.http import HttpRequest
from django.utils import timezone
from django.utils.text import Truncator

from ..models import SessionEntry, SessionEntryQuerySet, expired_q, live_q
from ..templatetags.aixyz_sessions_admin import shown

if TYPE_CHECKING:
    _EntryAdmin = admin.ModelAdmin[SessionEntry]
else:  # ModelAdmin is not subscriptable at run time
    _EntryAdmin = admin.ModelAdmin

EDITABLE_SETTING = "AIXYZ_SESSIONS_ADMIN_EDITABLE"
PREVIEW_CHARS = 60


def _editable() -> bool:
    return bool(getattr(settings, EDITABLE_SETTING, False))


class ExpiryFilter(admin.SimpleListFilter):
    title = "expiry"
    parameter_name = "expiry"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Active"), ("expired", "Expired")]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[SessionEntry]
    ) -> QuerySet[SessionEntry]:
        if self.value() == "active":
            return queryset.filter(live_q(timezone.now()))
        if self.value() == "expired":
            return queryset.filter(expired_q(timezone.now()))
        return queryset


class SessionEntryAdmin(_EntryAdmin):
    # Four columns fit a 1280 px window beside the admin's sidebar and the filter;
    # when an entry was written is on its own page.
    list_display = ("payer", "key_shown", "value_preview", "expires_at")
    list_display_links = ("payer", "key_shown")
    search_fields = ("payer", "key")
    list_filter = (ExpiryFilter,)
    ordering = ("payer", "key")
    list_per_page = 100
    actions = ("purge_expired",)
    fields = ("payer", "key", "value", "ttl_ms", "expires_at", "created_at", "updated_at")

    def get_model_perms(self, request: HttpRequest) -> dict[str, bool]:
        """Listed on the index only for the database store (see the module)."""
        from ..conf import StoreConfigError, get_store
        from ..stores.db import DatabaseSessionStore

        try:
            in_use = isinstance(get_store(), DatabaseSessionStore)
        except StoreConfigError:
            in_use = False
        return super().get_model_perms(request) if in_use else {}

    def get_queryset(self, request: HttpRequest) -> QuerySet[SessionEntry]:
        # Values may be up to 1 MiB each: the list reads a short prefix only.
        return (
            super()
            .get_queryset(request)
            .annotate(value_head=Substr("value", 1, PREVIEW_CHARS + 1))
            .defer("value")
        )

    @admin.display(description="key", ordering="key")
    def key_shown(self, entry: SessionEntry) -> str:
        """The key's start (a key may be 512 bytes), hidden characters as markers (``[U+202E]``)."""
        return shown(Truncator(entry.key).chars(PREVIEW_CHARS))

    @admin.display(description="value")
    def value_preview(self, entry: SessionEntry) -> str:
        head = getattr(entry, "value_head", None)
        text = head if isinstance(head, str) else entry.value
        return shown(Truncator(text).chars(PREVIEW_CHARS))

    @admin.action(description="Purge expired entries", permissions=["delete"])
    def purge_expired(self, request: HttpRequest, queryset: QuerySet[SessionEntry]) -> None:
        """Delete the expired entries among the selected ones (in batches)."""
        if isinstance(queryset, SessionEntryQuerySet):
            selected = queryset
        else:
            rows = SessionEntry.objects.db_manager(queryset.db).get_queryset()
            selected = rows.filter(pk__in=queryset.values("pk"))
        count = selected.purge_expired(timezone.now())
        noun = "entry" if count == 1 else "entries"
        self.message_user(request, f"Purged {count} expired session {noun}.", messages.SUCCESS)

    def get_readonly_fields(
        self, request: HttpRequest, obj: SessionEntry | None = None
    ) -> tuple[str, ...]:
        if _editable():
            return ("created_at", "updated_at")
        return tuple(self.fields or ())

    def has_add_permission(self, request: HttpRequest) -> bool:
        return _editable() and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: SessionEntry | None = None) -> bool:
        # Without it the change form is Django's read-only "view" page.
        return _editable() and super().has_change_permission(request, obj)

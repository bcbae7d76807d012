"""``SessionEntry``: one payer's key-value pair, the table behind ``DatabaseSessionStore``.

``PaymentClaim`` is that store's payment replay guard: one row per claimed
``(payer, nonce)``, kept until the authorization's window has passed.

``StoredSession`` has no table: it gives the admin's "Sessions" section
(``aixyz_sessions.admin.sessions``), which reads whatever store is
configured, its place in the admin index, its view and delete permissions
and its ``LogEntry`` rows.

A row per ``(payer, key)``; ``expires_at`` is ``NULL`` for entries that never
expire. Keys compare by Unicode code point on every supported database, so
the unique index on ``(payer, key)`` both finds a key and serves keyset list
pages in the order the session contract promises.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Q

from .channels.models import Channel as Channel  # the channels table (DatabaseChannelStorage)

__all__ = [
    "CodePointCharField",
    "PaymentClaim",
    "SessionEntry",
    "SessionEntryManager",
    "SessionEntryQuerySet",
    "StoredSession",
    "expired_q",
    "live_q",
]

# The collation that orders text by code point, per vendor. SQLite's default
# (BINARY) already does; PostgreSQL's database default usually follows the
# locale (en_US: "a" < "B" < "b"), so the column says "C" there.
_CODE_POINT_COLLATIONS = {"postgresql": "C", "mysql": "utf8mb4_bin"}


if TYPE_CHECKING:
    _CharField = models.CharField[str, str]
else:  # Django's fields are not subscriptable at run time
    _CharField = models.CharField


class CodePointCharField(_CharField):
    """A ``CharField`` that sorts and compares by Unicode code point on every backend.

    ``db_collation="C"`` would do it on PostgreSQL but is an unknown
    collation to SQLite, so the collation is chosen per connection here; the
    indexes on the column inherit it.
    """

    def db_parameters(self, connection: BaseDatabaseWrapper) -> dict[str, Any]:
        params = super().db_parameters(connection)
        if self.db_collation is None:
            params["collation"] = _CODE_POINT_COLLATIONS.get(connection.vendor)
        return params


def live_q(now: datetime) -> Q:
    """Rows that have not expired at ``now``."""
    return Q(expires_at__isnull=True) | Q(expires_at__gt=now)


def expired_q(now: datetime) -> Q:
    """Rows that have expired at ``now`` (never-expiring rows are not)."""
    return Q(expires_at__lte=now)


class SessionEntryQuerySet(models.QuerySet["SessionEntry"]):
    def live(self, now: datetime) -> SessionEntryQuerySet:
        """Entries still visible at ``now``."""
        return self.filter(live_q(now))

    def expired(self, now: datetime) -> SessionEntryQuerySet:
        """Entries expired at ``now``, waiting for a purge."""
        return self.filter(expired_q(now))

    def purge_expired(self, now: datetime, batch_size: int = 1000) -> int:
        """Delete the expired entries of this queryset, ``batch_size`` rows per statement.

        Short batches keep each delete's locks and transaction small, so a
        large purge never stalls the stores writing next to it. Returns how
        many rows went.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        rows = SessionEntryQuerySet(self.model, using=self.db)
        removed = 0
        while True:
            batch = list(self.expired(now).order_by().values_list("pk", flat=True)[:batch_size])
            if not batch:
                return removed
            # Re-check expiry: a row read (and so refreshed) meanwhile stays.
            removed += rows.filter(expired_q(now), pk__in=batch).delete()[0]
            if len(batch) < batch_size:
                return removed


class SessionEntryManager(models.Manager["SessionEntry"]):
    def get_queryset(self) -> SessionEntryQuerySet:
        return SessionEntryQuerySet(self.model, using=self._db)

    def live(self, now: datetime) -> SessionEntryQuerySet:
        return self.get_queryset().live(now)

    def expired(self, now: datetime) -> SessionEntryQuerySet:
        return self.get_queryset().expired(now)

    def purge_expired(self, now: datetime, batch_size: int = 1000) -> int:
        return self.get_queryset().purge_expired(now, batch_size)


class SessionEntry(models.Model):
    """One value a payer stored under a key."""

    payer = CodePointCharField(
        "payer", max_length=256, help_text="The payer's address, lower-cased."
    )
    key = CodePointCharField("key", max_length=512)
    value: models.TextField[str, str] = models.TextField("value", blank=True)
    ttl_ms: models.BigIntegerField[int, int] = models.BigIntegerField(
        "TTL (ms)",
        default=0,
        help_text="Sliding lifetime in ms, renewed by each read; 0 never expires.",
    )
    expires_at: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        "expires at", null=True, blank=True, help_text="Empty: never expires."
    )
    created_at: models.DateTimeField[datetime, datetime] = models.DateTimeField(
        "created at", auto_now_add=True
    )
    updated_at: models.DateTimeField[datetime, datetime] = models.DateTimeField(
        "updated at", auto_now=True
    )

    objects: ClassVar[SessionEntryManager] = SessionEntryManager()

    class Meta:
        verbose_name = "session entry"
        verbose_name_plural = "session entries"
        constraints = [
            models.UniqueConstraint(fields=["payer", "key"], name="aixyz_sessions_payer_key_uniq"),
        ]
        indexes = [models.Index(fields=["expires_at"], name="aixyz_sessions_expires_idx")]

    def __str__(self) -> str:
        return f"{self.payer} / {self.key}"


class PaymentClaim(models.Model):
    """A payment authorization ``(payer, nonce)`` that one request has claimed, or a record.

    Records (:meth:`~aixyz_sessions.replay.ReplayGuard.remember`) share the
    table: ``nonce`` is then the record's name and ``value`` its content.

    The unique constraint makes the claim atomic across processes: of any
    number of concurrent inserts, one succeeds. ``expires_at`` is the
    authorization's ``valid_before`` plus a grace period; after it the row
    is dead weight, deleted by the next claim of the same pair or by
    ``purge_expired``.
    """

    payer: models.CharField[str, str] = models.CharField(
        "payer", max_length=256, help_text="The payer's address, lower-cased."
    )
    nonce: models.CharField[str, str] = models.CharField(
        "nonce", max_length=256, help_text="The authorization's nonce, lower-cased."
    )
    expires_at: models.DateTimeField[datetime, datetime] = models.DateTimeField(
        "expires at", help_text="When the authorization can no longer be used anywhere."
    )
    value: models.TextField[str, str] = models.TextField(
        "value",
        blank=True,
        default="",
        help_text="A record's content (sign-in payment record, kept paid answer); "
        "empty for a claim.",
    )

    objects: ClassVar[models.Manager[PaymentClaim]] = models.Manager()

    class Meta:
        verbose_name = "payment claim"
        verbose_name_plural = "payment claims"
        constraints = [
            models.UniqueConstraint(
                fields=["payer", "nonce"], name="aixyz_sessions_claim_payer_nonce_uniq"
            ),
        ]
        indexes = [models.Index(fields=["expires_at"], name="aixyz_sessions_claim_exp_idx")]

    def __str__(self) -> str:
        return f"{self.payer} / {self.nonce}"


class StoredSession(models.Model):
    """A payer's session in the configured store, or one entry of it; no table (unmanaged).

    The admin's "Sessions" pages read the store through its public API, so
    this model is never queried: it exists for the admin index, for the
    ``view_storedsession`` / ``delete_storedsession`` permissions and as the
    object of the ``LogEntry`` rows that record deletions (``key`` empty:
    the whole session was erased).
    """

    payer: models.CharField[str, str] = models.CharField("payer", max_length=256, primary_key=True)
    key: models.CharField[str, str] = models.CharField("key", max_length=512, blank=True)

    objects: ClassVar[models.Manager[StoredSession]] = models.Manager()

    class Meta:
        managed = False
        verbose_name = "session"
        verbose_name_plural = "sessions"
        default_permissions = ("view", "delete")

    def __str__(self) -> str:
        return f"{self.payer} / {self.key}" if self.key else self.payer

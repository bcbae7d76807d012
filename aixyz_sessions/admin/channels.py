"""The admin's "Payment channels": x402 ``batch-settlement`` channels, read-only.

The ``Channel`` model gives the section its place in the admin index and its
``view`` permission, as ``StoredSession`` does for "Sessions"; its
``ModelAdmin`` replaces the model views with two pages that read the
configured ``ChannelStorage`` (see :mod:`.channel_access`), so they show the
same thing whether channels live in the database or in Redis:

* the channels, newest activity first, filtered by payer (``?payer=0x...``,
  any case, a prefix will do), a page at a time (``?p=2``): deposit,
  charged, claimed, what is still to claim, last activity, withdrawal, busy;
* one channel: its whole record (configuration, amounts, voucher, times).

Channels are the payment server's state, written only by it: nothing can be
added, changed or deleted here. The section is on the index only while
``AIXYZ_X402["BATCH_SETTLEMENT"]`` is set. A storage that cannot answer gives
a page that says so, with status 503.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.formats import date_format
from django.utils.http import urlencode
from django.utils.timezone import localtime
from django.views.decorators.http import require_POST, require_safe

from ..channels.models import Channel as ChannelRow
from ..conf import SettingError
from ..exceptions import SessionStoreError, SessionStoreUnavailable
from ..models import StoredSession
from . import channel_access as access
from .sessions import PAGE_SIZE_SETTING, describe_ttl

if TYPE_CHECKING:
    _ChannelAdmin = admin.ModelAdmin[ChannelRow]
else:  # ModelAdmin is not subscriptable at run time
    _ChannelAdmin = admin.ModelAdmin

__all__ = ["ChannelAdmin"]

logger = logging.getLogger(__name__)

TEMPLATES = "admin/aixyz_sessions/channel"
View = Callable[..., HttpResponse]


class _ChannelsOff(Exception):
    """``AIXYZ_X402["BATCH_SETTLEMENT"]`` is not set: there is no storage to read."""


class ChannelAdmin(_ChannelAdmin):
    """The "Payment channels" pages; ``list_per_page`` unless ``AIXYZ_SESSIONS_ADMIN_PAGE_SIZE``."""

    list_per_page = 100

    # -- permissions: view only -------------------------------------------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_model_perms(self, request: HttpRequest) -> dict[str, bool]:
        """On the index only while channels are configured (nothing to show otherwise)."""
        return super().get_model_perms(request) if access.channels_configured() else {}

    # -- URLs --------------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        def wrap(view: View) -> View:
            # GET only: these pages change nothing, so any other method is refused.
            return self.admin_site.admin_view(require_safe(self._storage_errors(view)))

        claim = self.admin_site.admin_view(require_POST(self._storage_errors(self.claim_view)))
        return [
            path("", wrap(self.changelist_view), name=self._url_name("changelist")),
            path("claim/", claim, name=self._url_name("claim")),
            path("<str:channel_id>/", wrap(self.detail_view), name=self._url_name("detail")),
        ]

    def _url_name(self, page: str) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_{page}"

    def _url(self, page: str, *args: str, **query: str) -> str:
        url = reverse(f"admin:{self._url_name(page)}", args=args, current_app=self.admin_site.name)
        params = {name: value for name, value in query.items() if value}
        return f"{url}?{urlencode(params)}" if params else url

    def channels_url(self, payer: str = "") -> str:
        """The list, filtered by ``payer`` when given (the sessions pages link here)."""
        return self._url("changelist", payer=payer.lower())

    def _sessions_url(self, request: HttpRequest) -> Callable[[str], str] | None:
        """``payer -> their "Sessions" page``, or ``None`` if this user cannot open it."""
        if not self.admin_site.is_registered(StoredSession):
            return None
        sessions = self.admin_site.get_model_admin(StoredSession)
        if not sessions.has_view_permission(request):
            return None
        name = f"admin:{sessions.opts.app_label}_{sessions.opts.model_name}_payer"
        return lambda payer: reverse(name, args=[payer], current_app=self.admin_site.name)

    # -- plumbing ----------------------------------------------------------------------------

    def page_size(self) -> int:
        size = getattr(settings, PAGE_SIZE_SETTING, self.list_per_page)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ImproperlyConfigured(f"{PAGE_SIZE_SETTING} must be an int >= 1, not {size!r}")
        return size

    def _storage_errors(self, view: View) -> View:
        """``view``, answering a 503 page instead of failing when the storage cannot answer."""

        @functools.wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                return view(request, *args, **kwargs)
            except _ChannelsOff:
                return self._render(request, "off.html", "Payment channels are off", {}, 404)
            except (SessionStoreError, SettingError) as exc:
                logger.warning("admin channels: the channel storage failed: %s", exc)
                detail = f"{exc.msg} ({exc.hint})" if isinstance(exc, SettingError) else str(exc)
                context = {"detail": detail, "reload_url": request.get_full_path()}
                response = self._render(
                    request, "unavailable.html", "Channel storage unavailable", context, 503
                )
                if isinstance(exc, SessionStoreUnavailable):
                    response["Retry-After"] = "5"
                return response

        return guarded

    def _render(
        self,
        request: HttpRequest,
        template: str,
        title: str,
        context: dict[str, Any],
        status: int = 200,
    ) -> TemplateResponse:
        request.current_app = self.admin_site.name
        base = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "channels_url": self.channels_url(),
        }
        return TemplateResponse(
            request, f"{TEMPLATES}/{template}", {**base, **context}, status=status
        )

    def _storage(self, request: HttpRequest) -> Any:
        """The configured storage; a page that says channels are off (404) when they are."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        storage = access.configured_storage()
        if storage is None:
            raise _ChannelsOff
        return storage

    # -- pages -------------------------------------------------------------------------------

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The channels, newest activity first, filtered by ``payer``, a page (``p``) at a time."""
        storage = self._storage(request)
        payer = "".join(request.GET.get("payer", "").split()).lower()
        page = access.channels_page(
            storage, payer=payer, number=request.GET.get("p", 1), per_page=self.page_size()
        )
        now_ms = int(time.time() * 1000)
        sessions_url = self._sessions_url(request)
        rows = [
            {
                "view": view,
                "url": self._url("detail", view.id),
                "sessions_url": sessions_url(view.payer) if sessions_url else None,
            }
            for view in (access.describe(channel, now_ms) for channel in page.object_list)
        ]
        count = page.paginator.count
        context = {
            "payer": payer,
            "rows": rows,
            "page": page,
            "count_text": f"{count} channel{'' if count == 1 else 's'}",
            "previous_url": (
                self._url("changelist", payer=payer, p=str(page.previous_page_number()))
                if page.has_previous()
                else None
            ),
            "next_url": (
                self._url("changelist", payer=payer, p=str(page.next_page_number()))
                if page.has_next()
                else None
            ),
            "payer_sessions_url": sessions_url(payer) if sessions_url and _address(payer) else None,
            "storage_name": type(getattr(storage, "inner", storage)).__name__,
            "claim_url": self._url("claim")
            if getattr(request.user, "is_superuser", False)
            else None,
            **(extra_context or {}),
        }
        return self._render(request, "list.html", "Payment channels", context)

    def claim_view(self, request: HttpRequest) -> HttpResponse:
        """POST, superusers: claim every charged voucher and settle now, in this process.

        The same pass as ``manage.py aixyz_channels --all --no-refund``; run in
        the server's process it also reaches the in-process LocalFacilitator's
        chain (a ``manage.py`` process has its own). Money moves: superusers only.
        """
        if not getattr(request.user, "is_superuser", False) or not request.user.is_active:
            raise PermissionDenied
        storage = self._storage(request)
        from ..channels.operations import run_pass
        from ..payments.runtime import get_runtime

        settings_ = get_runtime().config.batch_settlement
        if settings_ is None:
            raise _ChannelsOff
        lines: list[str] = []
        done = run_pass(
            getattr(storage, "inner", storage),
            settings_,
            everything=True,
            refund=False,
            say=lines.append,
        )
        for line in lines:
            level = messages.ERROR if line.startswith("FAILED") else messages.SUCCESS
            messages.add_message(request, level, line)
        if not lines:
            messages.info(request, "Nothing to claim: every charged voucher is claimed.")
        elif not done.failures:
            logger.info("admin channels: %s claimed and settled: %s", request.user, lines)
        return HttpResponseRedirect(self.channels_url())

    def detail_view(self, request: HttpRequest, channel_id: str) -> HttpResponse:
        """One channel's whole record, read-only."""
        storage = self._storage(request)
        key = access.normalize_id(channel_id)
        if key is None:
            raise Http404("not a channel id (0x and 64 hex digits)")
        channel = storage.get(key)
        if channel is None:
            messages.warning(request, f"There is no channel {key} (closed, or never opened).")
            return HttpResponseRedirect(self.channels_url())
        view = access.describe(channel, int(time.time() * 1000))
        sessions_url = self._sessions_url(request)
        context = {
            "view": view,
            "sessions_url": sessions_url(view.payer) if sessions_url else None,
            "payer_channels_url": self.channels_url(view.payer),
            **_detail_rows(view),
        }
        return self._render(request, "detail.html", f"Channel {view.short_id}", context)


def _when(moment: datetime | None, never: str = "never") -> str:
    return date_format(localtime(moment), "Y-m-d H:i:s T") if moment else never


def _detail_rows(view: access.ChannelView) -> dict[str, list[tuple[str, Any]]]:
    """The detail page's three tables, ``(label, value)`` each: the record, field by field."""
    channel, config = view.channel, view.channel.channel_config
    delay = config.withdraw_delay
    signature = channel.signature
    signature_bytes = max(len(signature) - 2, 0) // 2
    held = channel.pending_request
    return {
        "config_rows": [
            ("Channel id", view.id),
            ("Payer", config.payer),
            ("Payer authorizer", config.payer_authorizer),
            ("Receiver", config.receiver),
            ("Receiver authorizer", config.receiver_authorizer),
            ("Token", config.token),
            ("Withdraw delay", f"{delay} s ({describe_ttl(delay * 1000)})"),
            ("Salt", config.salt),
        ],
        "amount_rows": [
            ("Deposit (balance)", view.balance),
            ("Charged (cumulative)", view.charged),
            ("Claimed (total)", view.claimed),
            ("Pending (charged - claimed)", view.pending),
            ("Signed max claimable", view.signed_max),
        ],
        "state_rows": [
            ("Voucher signature", f"{view.signature_short} ({signature_bytes} bytes)"),
            ("Last activity", _when(view.last_activity)),
            ("Synced on chain", _when(view.synced)),
            ("Withdraw requested", _when(view.withdraw_requested, "no")),
            ("Refund nonce", channel.refund_nonce),
            (
                "Request in flight",
                "none"
                if held is None
                else f"{held.pending_id}, up to {held.signed_max_claimable}, "
                f"{'holds the channel until' if view.busy else 'expired'} "
                f"{_when(view.busy_until)}",
            ),
        ],
    }


def _address(text: str) -> bool:
    """Whether ``text`` is a whole address (a filter by prefix has no sessions page)."""
    return len(text) == 42 and text.startswith("0x")

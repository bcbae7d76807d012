"""The admin's "Sessions" section: payers, their keys and entries, in whatever store is configured.

``StoredSession`` (an unmanaged model, no table) gives the section its place
in the admin index and its permissions: ``view`` to browse, ``delete`` to
delete a key or erase a payer. Its ``ModelAdmin`` replaces the usual model
views with pages that read the store through its public API (see
:mod:`.store_access`), so they work for every store:

* the payers, searched by address prefix and paged with the store's cursor;
* one payer's keys, filtered by prefix, paged the same way, values previewed;
* one entry, read-only, with the time it has left when the store reports it;
* delete one key, erase a payer: confirmation pages, then a POST; each
  deletion is recorded as a ``LogEntry``.

A store that cannot be reached gives a page that says so, with status 503.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote as url_quote

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.http import urlencode

from ..conf import StoreConfigError, get_store
from ..exceptions import SessionStoreError, SessionStoreUnavailable
from ..models import StoredSession
from ..stores.base import SessionStore
from ..stores.memory import InMemorySessionStore
from ..stores.validation import check_key, check_payer
from ..templatetags.aixyz_sessions_admin import visible
from . import store_access as pages

if TYPE_CHECKING:
    _SessionAdmin = admin.ModelAdmin[StoredSession]
else:  # ModelAdmin is not subscriptable at run time
    _SessionAdmin = admin.ModelAdmin

__all__ = ["PAGE_SIZE_SETTING", "PREVIEW_CHARS", "StoredSessionAdmin", "describe_ttl", "preview"]

logger = logging.getLogger(__name__)

PAGE_SIZE_SETTING = "AIXYZ_SESSIONS_ADMIN_PAGE_SIZE"
PREVIEW_CHARS = 60
TEMPLATES = "admin/aixyz_sessions/storedsession"
#: What ``reverse`` leaves unescaped in a path argument (``django.urls.resolvers``).
_URL_SAFE = "!$&'()*+,;=/~:@"
T = TypeVar("T")
View = Callable[..., HttpResponse]


def describe_ttl(ttl_ms: int | None) -> str:
    """``3_725_000`` -> ``"1 h 2 min 5 s"``; ``None`` -> ``"never expires"``."""
    if ttl_ms is None:
        return "never expires"
    if ttl_ms < 1000:
        return f"{max(ttl_ms, 0)} ms"
    seconds = ttl_ms // 1000
    parts = [(seconds // 86400, "d"), (seconds // 3600 % 24, "h"), (seconds // 60 % 60, "min")]
    text = " ".join(f"{n} {unit}" for n, unit in parts if n)
    return f"{text} {seconds % 60} s".strip()


def preview(value: str) -> str:
    """The start of a value, at most :data:`PREVIEW_CHARS` characters with the ellipsis."""
    return value if len(value) <= PREVIEW_CHARS else value[: PREVIEW_CHARS - 1] + "…"


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


class StoredSessionAdmin(_SessionAdmin):
    """The "Sessions" pages; ``list_per_page`` is the page size unless the setting says."""

    list_per_page = 100

    # -- permissions: view and delete only -------------------------------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def _require(self, request: HttpRequest, *, delete: bool = False) -> None:
        allowed = self.has_delete_permission if delete else self.has_view_permission
        if not allowed(request):
            raise PermissionDenied

    # -- URLs -----------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        def wrap(view: View) -> View:
            return self.admin_site.admin_view(self._store_errors(view))

        name = self._url_name
        return [
            path("", wrap(self.changelist_view), name=name("changelist")),
            path("<str:payer>/", wrap(self.payer_view), name=name("payer")),
            path("<str:payer>/entry/", wrap(self.entry_view), name=name("entry")),
            path("<str:payer>/delete/", wrap(self.delete_key_view), name=name("delete_key")),
            path("<str:payer>/erase/", wrap(self.erase_view), name=name("erase")),
        ]

    def _url_name(self, page: str) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_{page}"

    def _url(self, page: str, payer: str | None = None, **query: str | None) -> str:
        args = [] if payer is None else [quote(payer)]
        url = reverse(f"admin:{self._url_name(page)}", args=args, current_app=self.admin_site.name)
        params = {name: value for name, value in query.items() if value}
        return f"{url}?{urlencode(params)}" if params else url

    def _payer_urls(self, page: str) -> Callable[[str], str]:
        """``payer -> URL of page``, as ``reverse`` makes it, with one ``reverse`` per table."""
        marker = "~payer~"
        pattern = self._url(page, marker)
        return lambda payer: pattern.replace(marker, url_quote(quote(payer), safe=_URL_SAFE), 1)

    # -- plumbing ---------------------------------------------------------------------------

    def page_size(self) -> int:
        size = getattr(settings, PAGE_SIZE_SETTING, self.list_per_page)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ImproperlyConfigured(f"{PAGE_SIZE_SETTING} must be an int >= 1, not {size!r}")
        return size

    @staticmethod
    def _run(work: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kwargs: Any) -> T:
        """Run one store coroutine to completion from this (synchronous) view."""
        return async_to_sync(work)(*args, **kwargs)

    def _store_errors(self, view: View) -> View:
        """``view``, answering a 503 page instead of failing when the store cannot answer."""

        @functools.wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                return view(request, *args, **kwargs)
            except (SessionStoreError, StoreConfigError) as exc:
                logger.warning("admin sessions: the session store failed: %s", exc)
                return self._unavailable(request, exc)

        return guarded

    def _unavailable(self, request: HttpRequest, exc: Exception) -> HttpResponse:
        detail = f"{exc.msg} ({exc.hint})" if isinstance(exc, StoreConfigError) else str(exc)
        response = self._render(
            request,
            "unavailable.html",
            "Session store unavailable",
            {"detail": detail, "reload_url": request.get_full_path()},
            503,
        )
        if isinstance(exc, SessionStoreUnavailable):
            response["Retry-After"] = "5"
        return response

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
            "sessions_url": self._url("changelist"),
            "has_delete_permission": self.has_delete_permission(request),
        }
        return TemplateResponse(
            request, f"{TEMPLATES}/{template}", {**base, **context}, status=status
        )

    def _payer(self, quoted: str) -> str:
        """The payer id of a URL (admin-quoted, exactly as the store listed it); 404 if invalid."""
        try:
            return check_payer(unquote(quoted))
        except ValueError as exc:
            raise Http404(f"not a payer id: {exc}") from None

    def _log_deletion(self, request: HttpRequest, payer: str, key: str, message: str) -> None:
        user_id = request.user.pk
        if user_id is None:  # admin_view lets only staff users in
            return
        LogEntry.objects.log_actions(
            user_id=user_id,
            queryset=[StoredSession(payer=payer, key=key)],
            action_flag=DELETION,
            change_message=message,
            single_object=True,
        )

    def _bad_link(self, request: HttpRequest, exc: ValueError, first_url: str) -> HttpResponse:
        context = {"detail": str(exc), "first_url": first_url}
        return self._render(request, "bad_link.html", "Page not available", context, 400)

    # -- pages ----------------------------------------------------------------------------------

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The payers, searched by address prefix (``q``), a page at a time (``cursor``)."""
        self._require(request)
        store = get_store()
        query = pages.normalize_payer(request.GET.get("q", ""))
        cursor = request.GET.get("cursor") or None
        first_url = self._url("changelist", q=query)
        try:
            page = self._run(
                pages.payers_page,
                store,
                prefix=query or None,
                cursor=cursor,
                limit=self.page_size(),
            )
            typed = None
            if page is None and query:
                typed = (query, self._run(pages.has_entries, store, check_payer(query)))
        except ValueError as exc:
            return self._bad_link(request, exc, first_url)
        payers = page.payers if page is not None else ([typed[0]] if typed else [])
        keys_url, erase_url = self._payer_urls("payer"), self._payer_urls("erase")
        rows = [{"payer": p, "url": keys_url(p), "erase_url": erase_url(p)} for p in payers]
        context = {
            "query": query,
            "can_list": page is not None,
            "typed_has_entries": typed[1] if typed else None,
            "rows": rows,
            "count_text": _plural(len(rows), "payer", "payers") + " on this page",
            "first_url": first_url if cursor else None,
            "next_url": (
                self._url("changelist", q=query, cursor=page.cursor)
                if page is not None and page.cursor
                else None
            ),
            "store_name": type(store).__name__,
            "in_memory": isinstance(store, InMemorySessionStore),
            **(extra_context or {}),
        }
        return self._render(request, "payers.html", "Sessions", context)

    def payer_view(self, request: HttpRequest, payer: str) -> HttpResponse:
        """One payer's entries, filtered by key prefix (``prefix``), a page at a time."""
        self._require(request)
        payer = self._payer(payer)
        store = get_store()
        prefix = request.GET.get("prefix", "")
        cursor = request.GET.get("cursor") or None
        first_url = self._url("payer", payer, prefix=prefix)
        try:
            page = self._run(
                pages.keys_page,
                store,
                payer,
                prefix=prefix or None,
                cursor=cursor,
                limit=self.page_size(),
            )
        except ValueError as exc:
            return self._bad_link(request, exc, first_url)
        entry_url = self._url("entry", payer)
        rows = [
            {"key": key, "preview": preview(value), "url": f"{entry_url}?{urlencode({'key': key})}"}
            for key, value in page.entries.items()
        ]
        context = {
            "payer": payer,
            "prefix": prefix,
            "rows": rows,
            "count_text": _plural(len(rows), "entry", "entries") + " on this page",
            "first_url": first_url if cursor else None,
            "next_url": (
                self._url("payer", payer, prefix=prefix, cursor=page.cursor)
                if page.cursor
                else None
            ),
            "erase_url": self._url("erase", payer),
            "channels_url": self._channels_url(request, payer),
        }
        return self._render(request, "keys.html", f"Session of {payer}", context)

    def _channels_url(self, request: HttpRequest, payer: str) -> str | None:
        """The payer's payment channels page, if channels are on and this user may see them.

        Only a link: the session page must not depend on the channel storage answering.
        """
        from ..channels.models import Channel
        from .channel_access import channels_configured

        if not channels_configured() or not self.admin_site.is_registered(Channel):
            return None
        channels = self.admin_site.get_model_admin(Channel)
        if not channels.has_view_permission(request):
            return None
        name = f"admin:{channels.opts.app_label}_{channels.opts.model_name}_changelist"
        url = reverse(name, current_app=self.admin_site.name)
        return f"{url}?{urlencode({'payer': payer})}"

    def _entry_or_redirect(
        self, request: HttpRequest, store: SessionStore, payer: str
    ) -> pages.StoredEntry | HttpResponse:
        key = request.POST.get("key") if request.method == "POST" else request.GET.get("key")
        gone = HttpResponseRedirect(self._url("payer", payer))
        try:
            entry = self._run(pages.read_entry, store, payer, check_key(key or ""))
        except ValueError:
            messages.warning(request, "That is not a valid key.")
            return gone
        if entry is None:
            messages.warning(request, f"{payer} has no entry “{key}” (deleted, or expired).")
            return gone
        return entry

    def entry_view(self, request: HttpRequest, payer: str) -> HttpResponse:
        """One entry (``key``), read-only, with the time it has left."""
        self._require(request)
        payer = self._payer(payer)
        entry = self._entry_or_redirect(request, get_store(), payer)
        if isinstance(entry, HttpResponse):
            return entry
        context = {
            "entry": entry,
            "payer_url": self._url("payer", payer),
            "ttl_text": describe_ttl(entry.ttl_ms) if entry.ttl_reported else None,
            "size_text": _plural(len(entry.value.encode("utf-8")), "byte", "bytes"),
            "delete_url": self._url("delete_key", payer, key=entry.key),
        }
        return self._render(request, "entry.html", visible(entry.key), context)

    def delete_key_view(self, request: HttpRequest, payer: str) -> HttpResponse:
        """Delete one key: a confirmation page (GET), then the deletion (POST)."""
        self._require(request, delete=True)
        payer = self._payer(payer)
        store = get_store()
        entry = self._entry_or_redirect(request, store, payer)
        if isinstance(entry, HttpResponse):
            return entry
        if request.method != "POST":
            context = {
                "entry": entry,
                "preview": preview(entry.value),
                "payer_url": self._url("payer", payer),
                "entry_url": self._url("entry", payer, key=entry.key),
            }
            return self._render(request, "delete_key.html", "Are you sure?", context)
        if self._run(store.delete, payer, entry.key):
            shown_key = visible(entry.key)
            self._log_deletion(request, payer, entry.key, f"Deleted key “{shown_key}”.")
            messages.success(request, f"Deleted “{shown_key}” of {payer}.")
        else:
            messages.warning(request, f"“{entry.key}” of {payer} was already gone.")
        return HttpResponseRedirect(self._url("payer", payer))

    def erase_view(self, request: HttpRequest, payer: str) -> HttpResponse:
        """Erase a payer: a confirmation page with the count (GET), then the erasure (POST)."""
        self._require(request, delete=True)
        payer = self._payer(payer)
        store = get_store()
        if request.method != "POST":
            count = self._run(pages.count_entries, store, payer)
            context = {
                "payer": payer,
                "count": count,
                "count_text": _plural(count, "entry", "entries"),
                "payer_url": self._url("payer", payer),
            }
            return self._render(request, "erase.html", "Are you sure?", context)
        removed = self._run(pages.erase_payer, store, payer)
        text = _plural(removed, "session entry", "session entries")
        if removed:
            self._log_deletion(request, payer, "", f"Erased {text}.")
        messages.success(request, f"Erased {text} of {payer}.")
        return HttpResponseRedirect(self._url("changelist"))

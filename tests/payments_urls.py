"""Views and URLconf for the payment tests: paid, free, sync, async, streaming, CBV."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.test import AsyncClient
from django.urls import path
from django.utils.decorators import method_decorator
from django.views import View

from aixyz_sessions import get_payer, get_session
from aixyz_sessions.payments import paid, refused_before_work, sign_in_required

OTHER_PAY_TO = "0x" + "cd" * 20


async def _count() -> dict[str, object]:
    session = get_session()
    assert session is not None
    count = int(await session.get("count") or "0") + 1
    await session.set("count", str(count))
    return {"payer": session.payer, "count": count}


@paid("$0.01")
async def paid_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(await _count())


@paid("$0.01")
async def report_view(request: HttpRequest, pk: int) -> JsonResponse:
    return JsonResponse({"report": pk, "payer": get_payer()})


@paid("$0.01")
def paid_sync_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"payer": get_payer()})


async def free_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"payer": get_payer(), "session": get_session() is not None})


def free_sync_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"payer": get_payer()})


@paid("$0.05", pay_to=OTHER_PAY_TO)
async def expensive_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"payer": get_payer()})


@paid("$0.01")
async def boom_view(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("view failed")


@paid("$0.01")
async def missing_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("nope", status=404)


@paid("$0.01")
async def refusing_view(request: HttpRequest) -> HttpResponse:
    """Refuses a request without ``?ok`` before doing anything (its payment stays usable)."""
    if "ok" not in request.GET:
        return refused_before_work(HttpResponse("say ok", status=400))
    return JsonResponse(await _count())


@paid("$0.01")
def stream_view(request: HttpRequest) -> StreamingHttpResponse:
    def chunks() -> Iterator[bytes]:
        for i in range(3):
            yield f"{i}:{get_payer()}\n".encode()

    return StreamingHttpResponse(chunks())


@paid("$0.01")
async def astream_view(request: HttpRequest) -> StreamingHttpResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(3):
            yield f"{i}:{get_payer()}\n".encode()

    return StreamingHttpResponse(chunks())


@paid("$0.01")
async def nested_view(request: HttpRequest) -> JsonResponse:
    inner = await AsyncClient().get("/free/")
    return JsonResponse({"outer": get_payer(), "inner": json.loads(inner.content)})


@method_decorator(paid("$0.01"), name="get")
class PaidView(View):
    async def get(self, request: HttpRequest) -> JsonResponse:
        return JsonResponse(await _count())

    async def post(self, request: HttpRequest) -> JsonResponse:
        return JsonResponse({"payer": get_payer()})


@method_decorator(paid("$0.01"), name="post")
class PaidPostView(View):
    async def post(self, request: HttpRequest) -> JsonResponse:
        body = json.loads(request.body or b"{}")
        return JsonResponse({"payer": get_payer(), "echo": body.get("echo")})


@paid("$0.01", sign_in="after_payment")
async def notes_view(request: HttpRequest) -> JsonResponse:
    """Paid; a payer of this URL comes back by signing in."""
    return JsonResponse(await _count())


@paid("$0.02", sign_in="after_any_payment")
async def reader_view(request: HttpRequest) -> JsonResponse:
    """Paid; a payer of anything here comes back by signing in."""
    session = get_session()
    assert session is not None
    return JsonResponse({"payer": session.payer, "count": await session.get("count")})


@sign_in_required()
async def whoami_view(request: HttpRequest) -> JsonResponse:
    """Free, but needs a proven payer."""
    session = get_session()
    assert session is not None
    return JsonResponse({"payer": session.payer, "count": await session.get("count")})


@paid("$0.01")
async def slow_view(request: HttpRequest) -> JsonResponse:
    """Paid, takes a while (concurrent retries arrive while it runs)."""
    await asyncio.sleep(0.3)
    return JsonResponse(await _count())


urlpatterns = [
    path("slow/", slow_view),
    path("notes/", notes_view),
    path("reader/", reader_view),
    path("whoami/", whoami_view),
    path("paid/", paid_view),
    path("reports/<int:pk>/", report_view),  # the metrics label is the pattern, not the path
    path("paid-sync/", paid_sync_view),
    path("free/", free_view),
    path("free-sync/", free_sync_view),
    path("expensive/", expensive_view),
    path("boom/", boom_view),
    path("missing/", missing_view),
    path("refusing/", refusing_view),
    path("stream/", stream_view),
    path("astream/", astream_view),
    path("nested/", nested_view),
    path("cbv/", PaidView.as_view()),
    path("cbv-post/", PaidPostView.as_view()),
]

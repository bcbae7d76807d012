"""Paid views as users write them with other tools: a sync view, DRF, django-ninja.

The URLconf of ``tests/test_frameworks.py``; docs/payments.md shows the same code.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.utils.decorators import method_decorator
from ninja import NinjaAPI
from ninja.decorators import decorate_view
from rest_framework import routers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from aixyz_sessions import get_session
from aixyz_sessions.payments import paid


# A sync view: the session's methods are async, so call them through async_to_sync.
@paid("$0.01")
def sync_counter(request: HttpRequest) -> JsonResponse:
    session = get_session()
    assert session is not None
    count = int(async_to_sync(session.get)("count") or "0") + 1
    async_to_sync(session.set)("count", str(count))
    return JsonResponse({"payer": session.payer, "count": count})


# Django REST framework: an APIView with a paid method.
class Notes(APIView):
    @method_decorator(paid("$0.01"))
    def post(self, request: Request) -> Response:
        session = get_session()
        assert session is not None
        async_to_sync(session.set)(request.data["key"], request.data["note"])
        return Response({"payer": session.payer, "stored": request.data["key"]})


# DRF viewsets behind a router: the middleware learns the price when the action runs.
class NoteViewSet(viewsets.ViewSet):
    @method_decorator(paid("$0.02"))
    def retrieve(self, request: Request, pk: str) -> Response:
        session = get_session()
        assert session is not None
        return Response({"key": pk, "note": async_to_sync(session.get)(pk)})


router = routers.SimpleRouter()
router.register("drf-notes", NoteViewSet, basename="note")

# django-ninja: decorate_view puts @paid around the operation.
api = NinjaAPI(urls_namespace="tests_ninja")


@api.post("/remember")
@decorate_view(paid("$0.03"))
async def remember(request: HttpRequest, key: str, note: str) -> dict[str, Any]:
    session = get_session()
    assert session is not None
    await session.set(key, note)
    return {"payer": session.payer, "stored": key}


@api.get("/recall")
@decorate_view(paid("$0.01"))
async def recall(request: HttpRequest, key: str) -> dict[str, Any]:
    session = get_session()
    assert session is not None
    return {"key": key, "note": await session.get(key)}


@api.get("/free")
def free(request: HttpRequest) -> dict[str, Any]:
    return {"session": get_session() is not None}


urlpatterns = [
    path("sync-counter/", sync_counter),
    path("drf/notes/", Notes.as_view()),
    path("", include(router.urls)),
    path("ninja/", api.urls),
]

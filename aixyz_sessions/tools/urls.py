"""URLconf for the HTTP tool endpoints: ``path("tools/", include("aixyz_sessions.tools.urls"))``."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "aixyz_tools"

urlpatterns = [
    path("", views.tool_list, name="list"),
    path("<str:name>", views.call, name="call"),
    path("<str:name>/", views.call),
]

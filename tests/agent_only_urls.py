"""URLconf of a project that serves only the A2A agent (no paid views, no HTTP tools)."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [path("", include("aixyz_sessions.agent.urls"))]

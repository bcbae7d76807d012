"""URLconf for the A2A tests: the agent (card and /agent) and the HTTP tools."""

from __future__ import annotations

from django.urls import include, path

AGENT = {
    "NAME": "Test Agent",
    "DESCRIPTION": "Invokes the example tools.",
    "VERSION": "2.0.0",
    "PRICE": "$0.001",
}

urlpatterns = [
    path("", include("aixyz_sessions.agent.urls")),
    path("tools/", include("aixyz_sessions.tools.urls")),
]

"""Demo URLs: the index, the admin, the tools over HTTP, the agent over A2A, health, metrics.

``/mcp`` (MCP) and ``/ws/tools/`` (WebSocket) are routed by the ASGI app
(``demo_project.asgi``), not here.
"""

from django.contrib import admin
from django.urls import include, path

from . import views
from .favicon import favicon

urlpatterns = [
    path("", views.index, name="index"),
    path("favicon.ico", favicon),
    path("admin/", admin.site.urls),
    path("tools/", include("aixyz_sessions.tools.urls")),
    path("", include("aixyz_sessions.agent.urls")),  # /.well-known/agent-card.json, /agent
    path("", include("aixyz_sessions.health.urls")),  # /healthz, /readyz
    path("", include("aixyz_sessions.metrics.urls")),  # /metrics (staff, or a bearer token)
]

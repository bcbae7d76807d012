"""URLconf for the health endpoints: ``path("", include("aixyz_sessions.health.urls"))``.

Serves ``/healthz`` (the process is up) and ``/readyz`` (it can take paid calls now).
"""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "aixyz_health"

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
]

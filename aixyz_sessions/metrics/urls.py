"""URLconf for ``/metrics``: ``path("", include("aixyz_sessions.metrics.urls"))``.

Answers 404 until ``AIXYZ_METRICS`` is set (see :mod:`~aixyz_sessions.metrics.conf`).
"""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "aixyz_metrics"

urlpatterns = [path("metrics", views.metrics, name="metrics")]

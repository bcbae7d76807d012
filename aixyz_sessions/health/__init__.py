"""Health endpoints for load balancers and orchestrators: ``/healthz`` and ``/readyz``.

``path("", include("aixyz_sessions.health.urls"))`` serves both (see :mod:`.views`).
"""

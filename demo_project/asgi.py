"""ASGI entry point of the demo: Django, the MCP server at ``/mcp`` and tools over WebSocket.

``uvicorn demo_project.asgi:application`` (what ``make demo`` runs). Static
files (the admin's CSS) are served here too, as ``runserver`` would in
development, so the admin looks right without ``collectstatic``.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_project.settings")

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

from aixyz_sessions.asgi import get_asgi_application

application = ASGIStaticFilesHandler(get_asgi_application())

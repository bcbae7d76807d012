"""The demo's icon, so a browser's ``/favicon.ico`` request is not a 404 in its console."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

# A key in a rounded square: sessions keyed by the payer.
ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">'
    '<rect width="64" height="64" rx="14" fill="#1f4ed8"/>'
    '<circle cx="24" cy="32" r="10" fill="none" stroke="#fff" stroke-width="6"/>'
    '<path d="M34 32h20M46 32v9M53 32v6" stroke="#fff" stroke-width="6" fill="none"/>'
    "</svg>"
)


async def favicon(request: HttpRequest) -> HttpResponse:
    """An SVG icon (browsers accept SVG for ``/favicon.ico``), cached for a day."""
    response = HttpResponse(ICON, content_type="image/svg+xml")
    response["Cache-Control"] = "public, max-age=86400"
    return response

"""URLconf for A2A: ``path("", include("aixyz_sessions.agent.urls"))`` at the site root.

Serves ``/.well-known/agent-card.json`` (where A2A clients look for the card),
``/.well-known/agent-registration.json`` (the ERC-8004 registration file an
on-chain agent id points at) and ``/agent`` (JSON-RPC, paid per message).
"""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "aixyz_agent"

urlpatterns = [
    path(".well-known/agent-card.json", views.agent_card, name="card"),
    path(".well-known/agent-registration.json", views.agent_registration, name="registration"),
    path("agent", views.agent, name="agent"),
]

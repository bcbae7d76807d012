"""The demo's agent for text messages: the template's session agent, on a model.

Used when ``OPENAI_API_KEY`` is set (``OPENAI_BASE_URL`` for any
OpenAI-compatible server, ``OPENAI_MODEL`` for the model, default
``gpt-4o-mini``); without one, ``/agent`` still serves the card and direct
tool invocations, and a text message is answered with how to invoke a tool.
"""

from __future__ import annotations

import os

from aixyz_sessions.agent.loop import ToolLoopAgent

INSTRUCTIONS = (
    "You keep content for the user in their own session, with two tools: "
    "put-content stores a value under a key (a null value deletes the key), and "
    "get-content reads one key or lists the content a page at a time. Use the tools "
    "for every request about the user's content, then say briefly what you stored "
    "or found. Never invent content that get-content did not return."
)

session_agent = ToolLoopAgent(
    instructions=INSTRUCTIONS,
    model=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"),
    tools=["put-content", "get-content"],
    max_steps=10,
    max_tool_calls=5,  # with put-content at $0.01, a $0.05 text turn covers them (W207)
)

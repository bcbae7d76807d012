"""The agent over A2A (the ``a2a-sdk``): the agent card and a paid JSON-RPC ``/agent``.

Configure ``AIXYZ_AGENT`` (:mod:`.conf`), route ``aixyz_sessions.agent.urls``
at the site root, keep ``X402Middleware`` installed: every message is paid
with x402 and runs in the payer's session, so the tools it invokes see that
payer's data (:mod:`.executor`); tasks belong to their payer (:mod:`.server`).
"""

from __future__ import annotations

from .conf import AgentConfig, AgentConfigError, get_agent_config

__all__ = ["AgentConfig", "AgentConfigError", "get_agent_config"]

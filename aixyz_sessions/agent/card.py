"""The agent card (``/.well-known/agent-card.json``), built with the ``a2a-sdk`` types.

One JSON-RPC interface at the agent URL, advertised for A2A 1.0 and 0.3 (the
SDK serves both on one endpoint, and its card serializer adds the 0.3 fields
``url``/``protocolVersion``/``preferredTransport`` that 0.3 clients read).
Skills are ``AIXYZ_AGENT["SKILLS"]`` when given, else one per registered tool.
The description says what a text message costs: its price in words
(``$0.001``, ``up to $0.05``), and ``TOKEN_PRICES`` for a metered turn.
"""

from __future__ import annotations

from typing import Any

from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill

from ..tools.registry import ToolRegistry, registry
from .conf import AgentConfig
from .inband import extension_of

__all__ = ["build_card", "card_json"]

#: What messages and results may carry (text, and JSON data parts).
MODES = ["text/plain", "application/json"]


def _skills(config: AgentConfig, tools: ToolRegistry) -> list[AgentSkill]:
    if config.skills is not None:
        return [
            AgentSkill(
                id=s["id"],
                name=s["name"],
                description=s.get("description", ""),
                tags=list(s.get("tags", [])),
                examples=list(s.get("examples", [])),
            )
            for s in config.skills
        ]
    return [
        AgentSkill(
            id=item.name,
            name=item.name,
            description=(item.description or item.name)
            + (f" ({item.price_label} a call, x402)" if item.paid else ""),
            tags=["tool"] + (["paid"] if item.paid else []),
            examples=[f'{{"tool": "{item.name}", "arguments": {{...}}}}'],
        )
        for item in tools
    ]


def build_card(config: AgentConfig, url: str, *, tools: ToolRegistry = registry) -> AgentCard:
    """The card of the agent served at ``url`` (the absolute URL of its JSON-RPC endpoint)."""
    description = f"{config.description} A message invokes one tool at that tool's price (x402)"
    if config.agent is None:
        description += "."
    elif config.token_prices is None:
        description += f"; a text message costs {config.price}."
    else:
        description += (
            f"; a text message costs {config.price}: "
            f"{config.token_prices.label} of the model it runs."
        )
    return AgentCard(
        name=config.name,
        description=description,
        version=config.version,
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0"),
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="0.3"),
        ],
        capabilities=AgentCapabilities(
            streaming=True,
            push_notifications=True,
            extensions=[extension_of(config.x402_extension_required)],
        ),
        default_input_modes=MODES,
        default_output_modes=MODES,
        skills=_skills(config, tools),
    )


def card_json(card: AgentCard) -> dict[str, Any]:
    """The card as JSON, with the A2A 0.3 fields beside the 1.0 ones (the SDK's serializer)."""
    return agent_card_to_dict(card)

"""The ERC-8004 registration file (``/.well-known/agent-registration.json``).

An ERC-8004 identity registry points an agent's on-chain id at a JSON file
(``registration-v1``) saying who the agent is and where to reach it. This
module builds that file from ``AIXYZ_AGENT`` and checks one against the
fields the EIP defines. The same field rules check the settings
(``IMAGE``, ``REGISTRATIONS``, ``SUPPORTED_TRUST``: ``E209``), the served
file and ``manage.py aixyz_agent_registration``, so the three cannot drift.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from .conf import AgentConfig

__all__ = [
    "A2A_VERSION",
    "REGISTRATION_TYPE",
    "TRUST_MODELS",
    "build_registration",
    "image_problem",
    "mcp_version",
    "registration_entry_problems",
    "registration_problems",
    "trust_problems",
]

REGISTRATION_TYPE = "https://eips.ethereum.org/EIPS/eip-8004#registration-v1"
#: The A2A protocol version ERC-8004 names for an agent card endpoint.
A2A_VERSION = "0.3.0"
#: The trust models ERC-8004 names (``supportedTrust``).
TRUST_MODELS = ("reputation", "crypto-economic", "tee-attestation")
#: ``eip155:<chainId>:<registry address>``: a CAIP-10 account on an EVM chain.
AGENT_REGISTRY = re.compile(r"eip155:[0-9]+:0x[0-9a-fA-F]{40}")
#: Schemes an image URL may use: the web, and IPFS (where NFT-style metadata often lives).
IMAGE_SCHEMES = frozenset({"http", "https", "ipfs"})
REGISTRATION_KEYS = frozenset({"agentId", "agentRegistry"})


def mcp_version() -> str:
    """The MCP protocol revision the installed ``mcp`` SDK proposes (its latest)."""
    from mcp.types import LATEST_PROTOCOL_VERSION

    return LATEST_PROTOCOL_VERSION


def image_problem(value: object) -> str | None:
    """Why ``value`` is not an image URL (``http(s)://`` or ``ipfs://``), or ``None``."""
    if not isinstance(value, str):
        return f"must be a URL string, got {type(value).__name__}"
    parts = urlsplit(value)
    if parts.scheme not in IMAGE_SCHEMES or not parts.netloc:
        return f"must be an http(s):// or ipfs:// URL, got {value!r}"
    return None


def registration_entry_problems(entry: object) -> list[str]:
    """Why one ``{"agentId", "agentRegistry"}`` entry is wrong (empty when it is right)."""
    if not isinstance(entry, dict):
        return [f"must be an object with agentId and agentRegistry, got {entry!r}"]
    problems: list[str] = []
    unknown = sorted(str(k) for k in set(entry) - REGISTRATION_KEYS)
    if unknown:
        problems.append(f"has unknown keys: {', '.join(unknown)}")
    agent_id = entry.get("agentId")
    # bool is an int subclass: True is not an agent id.
    if isinstance(agent_id, bool) or not isinstance(agent_id, int) or agent_id < 0:
        problems.append(f"agentId must be a non-negative integer, got {agent_id!r}")
    registry = entry.get("agentRegistry")
    if not isinstance(registry, str) or not AGENT_REGISTRY.fullmatch(registry):
        problems.append(
            f"agentRegistry must be eip155:<chainId>:0x<40 hex digits>, got {registry!r}"
        )
    return problems


def trust_problems(value: object) -> list[str]:
    """Why ``value`` is not a list of known trust models (empty when it is one)."""
    if not isinstance(value, list | tuple):
        return [f"must be a list of {', '.join(TRUST_MODELS)}, got {value!r}"]
    unknown = [t for t in value if t not in TRUST_MODELS]
    if unknown:
        return [f"has unknown trust models {unknown!r} (known: {', '.join(TRUST_MODELS)})"]
    return []


def registration_problems(data: object) -> list[str]:
    """Every way ``data`` is not an ERC-8004 ``registration-v1`` file (empty when it is one).

    Checks the types the EIP gives each field, ``type`` exactly, each service
    (a str ``name`` and ``endpoint``, an optional str ``version``), each
    registration (``agentId`` a non-negative int, ``agentRegistry``
    ``eip155:<chainId>:<address>``) and the trust models. Pure: no settings.
    """
    if not isinstance(data, dict):
        return [f"a registration file is a JSON object, got {type(data).__name__}"]
    problems: list[str] = []
    if data.get("type") != REGISTRATION_TYPE:
        problems.append(f"type must be {REGISTRATION_TYPE!r}, got {data.get('type')!r}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(f"name must be a non-empty string, got {name!r}")
    if "description" in data and not isinstance(data["description"], str):
        problems.append(f"description must be a string, got {data['description']!r}")
    if "image" in data and (why := image_problem(data["image"])):
        problems.append(f"image {why}")
    for key in ("x402Support", "active"):
        if key in data and not isinstance(data[key], bool):
            problems.append(f"{key} must be true or false, got {data[key]!r}")
    problems.extend(_service_problems(data.get("services", [])))
    registrations = data.get("registrations", [])
    if not isinstance(registrations, list):
        problems.append(f"registrations must be a list, got {registrations!r}")
    else:
        for i, entry in enumerate(registrations):
            problems.extend(f"registrations[{i}] {p}" for p in registration_entry_problems(entry))
    if "supportedTrust" in data:
        problems.extend(f"supportedTrust {p}" for p in trust_problems(data["supportedTrust"]))
    return problems


def _service_problems(services: object) -> list[str]:
    if not isinstance(services, list):
        return [f"services must be a list, got {services!r}"]
    problems: list[str] = []
    for i, service in enumerate(services):
        if not isinstance(service, dict):
            problems.append(f"services[{i}] must be an object, got {service!r}")
            continue
        for key in ("name", "endpoint"):
            if not isinstance(service.get(key), str) or not service[key]:
                problems.append(
                    f"services[{i}].{key} must be a non-empty string, got {service.get(key)!r}"
                )
        if "version" in service and not isinstance(service["version"], str):
            problems.append(f"services[{i}].version must be a string, got {service['version']!r}")
    return problems


def build_registration(
    config: AgentConfig,
    *,
    origin: str,
    card_url: str,
    mcp_url: str | None,
    x402: bool,
) -> dict[str, Any]:
    """The registration file of the agent ``config`` served at ``origin``.

    ``card_url`` is the agent card's absolute URL (ERC-8004's A2A endpoint is
    the card, not the JSON-RPC URL: a client starts from the card);
    ``mcp_url`` is ``None`` when this server answers no MCP. ``x402`` says
    whether payments are configured (``AIXYZ_X402``).
    """
    services: list[dict[str, Any]] = [
        {"name": "web", "endpoint": origin},
        {"name": "A2A", "endpoint": card_url, "version": A2A_VERSION},
    ]
    if mcp_url is not None:
        services.append({"name": "MCP", "endpoint": mcp_url, "version": mcp_version()})
    data: dict[str, Any] = {
        "type": REGISTRATION_TYPE,
        "name": config.name,
        "description": config.description,
        # Not a registration-v1 field, but the EIP lets a file carry more than
        # it names, and a registry browser can show which build it points at.
        "version": config.version,
    }
    if config.image is not None:
        data["image"] = config.image
    data.update(services=services, x402Support=x402, active=True)
    if config.registrations:
        data["registrations"] = [dict(r) for r in config.registrations]
    if config.supported_trust:
        data["supportedTrust"] = list(config.supported_trust)
    return data

"""Reading ``AIXYZ_AGENT``: the agent an A2A client talks to, and what a message costs.

::

    AIXYZ_AGENT = {
        "NAME": "Session Content Agent",          # required
        "DESCRIPTION": "Stores and reads content in your session.",   # required
        "VERSION": "1.0.0",                       # default "1.0.0"
        # What one text turn costs: exactly one of
        "PRICE": "$0.001",                        # a fixed price (x402 exact)
        # "UPTO": "$0.05",                        # the most one turn may cost (x402 upto)
        # "ACCEPTS": [{"price": "$0.001", "network": "eip155:8453"}, ...],  # as @paid(accepts=)
        "TOKEN_PRICES": {"input": "$0.0005", "output": "$0.0015"},  # optional, needs upto
        "AGENT": "myapp.agents.answer",           # optional: text messages go here
        "SKILLS": [{"id": "...", "name": "...", "description": "..."}],  # optional
        # optional, for the ERC-8004 registration file (agent/registration.py):
        "IMAGE": "https://example.com/agent.png",
        "REGISTRATIONS": [{"agentId": 22, "agentRegistry": "eip155:8453:0x..."}],
        "SUPPORTED_TRUST": ["reputation"],
    }

``PRICE``, ``UPTO`` and ``ACCEPTS`` build the text turn's
:class:`~aixyz_sessions.payments.decorators.PaidSpec` exactly as ``@paid``
does (:func:`~aixyz_sessions.payments.decorators.priced_spec`), so networks,
assets and metered prices work for turns as for views and tools. A metered
turn (``UPTO``, or an ``upto`` option in ``ACCEPTS``) settles what it used:
``TOKEN_PRICES`` are dollars per 1,000 input (prompt) and output
(completion) tokens of the model, which a
:class:`~aixyz_sessions.agent.loop.ToolLoopAgent` counts and charges at the
end of the turn, never above the maximum the payer authorized (see
:func:`~aixyz_sessions.agent.turns.charge_tokens`). A metered turn that
charges nothing settles its maximum, as x402 ``upto`` does; a plain
``AGENT`` callable meters its turns with ``charge()`` or ``charge_tokens()``.

Without ``SKILLS`` the card lists one skill per registered tool. A value
that cannot work raises :class:`AgentConfigError`, which the system check
reports with an id (``aixyz_sessions.E2xx``) and a hint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from django.conf import settings

from ..conf import SettingError
from ..lazy import Lazy, lazy_setting

if TYPE_CHECKING:
    from ..payments.decorators import PaidSpec

__all__ = [
    "SETTING",
    "AgentConfig",
    "AgentConfigError",
    "TokenPrices",
    "agent_config_errors",
    "get_agent_config",
]

SETTING = "AIXYZ_AGENT"
#: The keys that price a text turn; a setting gives exactly one.
PRICE_KEYS = ("PRICE", "UPTO", "ACCEPTS")
#: The keys that only the ERC-8004 registration file reads (``E209``).
REGISTRATION_KEYS = ("IMAGE", "REGISTRATIONS", "SUPPORTED_TRUST")
KNOWN_KEYS = frozenset(
    {
        "NAME",
        "DESCRIPTION",
        "VERSION",
        *PRICE_KEYS,
        "TOKEN_PRICES",
        "AGENT",
        "SKILLS",
        *REGISTRATION_KEYS,
        "X402_EXTENSION_REQUIRED",
    }
)
SKILL_KEYS = frozenset({"id", "name", "description", "tags", "examples"})
TOKEN_KEYS = frozenset({"input", "output"})
#: Tokens a rate of ``TOKEN_PRICES`` is for.
TOKENS_PER_RATE = 1000

_PRICE_HINT = (
    "What one text turn costs: PRICE = '$0.001' (fixed), UPTO = '$0.05' (the most a turn "
    'may cost; it settles what it used) or ACCEPTS = [{"price": "$0.001", '
    '"network": "eip155:8453"}, ...] (as @paid(accepts=...)).'
)
_TOKEN_HINT = (
    'TOKEN_PRICES = {"input": "$0.0005", "output": "$0.0015"}: dollars per 1,000 prompt '
    "and completion tokens, with a metered price (UPTO, or an upto option in ACCEPTS)."
)


class AgentConfigError(SettingError):
    """``AIXYZ_AGENT`` cannot work."""


@dataclass(frozen=True)
class TokenPrices:
    """``TOKEN_PRICES``: dollars per 1,000 input (prompt) and output (completion) tokens."""

    input: Decimal
    output: Decimal

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        """What ``prompt_tokens`` and ``completion_tokens`` cost, in dollars (exact)."""
        return (self.input * prompt_tokens + self.output * completion_tokens) / TOKENS_PER_RATE

    @property
    def label(self) -> str:
        """The rates in words, for the agent card."""
        return (
            f"${self.input:f} per 1,000 input tokens and ${self.output:f} per 1,000 output tokens"
        )


@dataclass(frozen=True)
class AgentConfig:
    """The parsed ``AIXYZ_AGENT`` setting.

    ``spec`` is what a text turn costs (``PRICE``, ``UPTO`` or ``ACCEPTS``):
    one object per parsed setting, sold as resource ``"agent"``.
    """

    name: str
    description: str
    spec: PaidSpec
    version: str = "1.0.0"
    agent: str | None = None
    skills: tuple[dict[str, Any], ...] | None = field(default=None)
    token_prices: TokenPrices | None = None
    #: For the ERC-8004 registration file: an image URL, on-chain ids, trust models.
    image: str | None = None
    registrations: tuple[dict[str, Any], ...] = ()
    supported_trust: tuple[str, ...] = ()
    #: The card declares the a2a-x402 extension required: messages without it are refused.
    x402_extension_required: bool = False

    @property
    def price(self) -> str:
        """A text turn's price in words: ``$0.001``, ``up to $0.05``, ``$0.01 on ... or ...``."""
        return self.spec.label


def _error(msg: str, id: str, hint: str) -> AgentConfigError:
    return AgentConfigError(msg, id=id, hint=hint)


def agent_config_errors(value: object) -> list[AgentConfigError]:
    """Every problem with a value of ``AIXYZ_AGENT`` (empty when it can work)."""
    if not isinstance(value, dict):
        return [
            _error(
                f"{SETTING} must be a dict, got {type(value).__name__}",
                "aixyz_sessions.E200",
                f'{SETTING} = {{"NAME": "...", "DESCRIPTION": "...", "PRICE": "$0.001"}}',
            )
        ]
    errors: list[AgentConfigError] = []
    unknown = sorted(str(k) for k in set(value) - KNOWN_KEYS)
    if unknown:
        errors.append(
            _error(
                f"{SETTING} has unknown keys: {', '.join(unknown)}",
                "aixyz_sessions.E201",
                f"Known keys: {', '.join(sorted(KNOWN_KEYS))}.",
            )
        )
    for key in ("NAME", "DESCRIPTION", "VERSION"):
        text = value.get(key, "1.0.0" if key == "VERSION" else None)
        if not isinstance(text, str) or not text.strip():
            errors.append(
                _error(
                    f"{SETTING}[{key!r}] must be a non-empty str, got {text!r}",
                    "aixyz_sessions.E202",
                    "The agent card shows it to every A2A client.",
                )
            )
    spec: PaidSpec | None = None
    try:
        spec = turn_price(value, name="")
    except AgentConfigError as exc:
        errors.append(exc)
    try:
        parse_token_prices(value.get("TOKEN_PRICES"), spec)
    except AgentConfigError as exc:
        errors.append(exc)
    agent = value.get("AGENT")
    if agent is not None and (not isinstance(agent, str) or "." not in agent):
        errors.append(
            _error(
                f"{SETTING}['AGENT'] must be a dotted path, got {agent!r}",
                "aixyz_sessions.E204",
                "Name an async callable (text, context) -> str, or a ToolLoopAgent instance.",
            )
        )
    errors.extend(_skill_errors(value.get("SKILLS")))
    errors.extend(_registration_errors(value))
    if not isinstance(value.get("X402_EXTENSION_REQUIRED", False), bool):
        errors.append(
            _error(
                f"{SETTING}['X402_EXTENSION_REQUIRED'] must be True or False",
                "aixyz_sessions.E210",
                "True: clients must pay inside the conversation (the a2a-x402 extension); "
                "False (the default): HTTP 402 serves clients that do not activate it.",
            )
        )
    return errors


def price_key(value: dict[str, Any]) -> str:
    """Which of ``PRICE``, ``UPTO`` and ``ACCEPTS`` prices the turn (``PRICE`` if unclear)."""
    given = [key for key in PRICE_KEYS if value.get(key) is not None]
    return given[0] if len(given) == 1 else "PRICE"


def turn_price(value: dict[str, Any], *, name: str) -> PaidSpec:
    """A text turn's :class:`PaidSpec` from exactly one of ``PRICE``, ``UPTO``, ``ACCEPTS``.

    Built by ``priced_spec``, as ``@paid`` builds a view's; every problem is
    ``E203`` with the reason and a hint. Raises :class:`AgentConfigError`.
    """
    from ..payments.conf import X402ConfigError
    from ..payments.decorators import priced_spec

    given = [key for key in PRICE_KEYS if value.get(key) is not None]
    if len(given) != 1:
        said = f"got {' and '.join(given)}" if given else "got none"
        raise _error(
            f"{SETTING} takes exactly one of PRICE, UPTO and ACCEPTS; {said}",
            "aixyz_sessions.E203",
            _PRICE_HINT,
        )
    (key,) = given
    try:
        return priced_spec(
            f"{SETTING}[{key!r}]",
            **{key.lower(): value[key]},
            description=name or None,
            resource="agent",
        )
    except X402ConfigError as exc:
        raise _error(exc.msg, "aixyz_sessions.E203", exc.hint) from None
    except (TypeError, ValueError) as exc:
        raise _error(str(exc), "aixyz_sessions.E203", _PRICE_HINT) from None


def parse_token_prices(value: object, spec: PaidSpec | None) -> TokenPrices | None:
    """``TOKEN_PRICES``, checked against the turn's ``spec`` (``None``: not given).

    Each rate is dollars (``"$0.0005"``) per 1,000 tokens, zero or more, and
    not both zero; the turn needs a metered price, or the rates could never
    change what it settles. ``spec`` ``None`` (a price that is itself wrong)
    checks the rates alone. Raises :class:`AgentConfigError` ``E208``.
    """
    if value is None:
        return None
    what = f"{SETTING}['TOKEN_PRICES']"
    if not isinstance(value, dict) or set(value) != TOKEN_KEYS:
        raise _error(
            f'{what} must be a dict of "input" and "output" rates, got {value!r}',
            "aixyz_sessions.E208",
            _TOKEN_HINT,
        )
    rates = TokenPrices(
        _rate(value["input"], f"{what}['input']"), _rate(value["output"], f"{what}['output']")
    )
    if not rates.input and not rates.output:
        raise _error(
            f"{what} makes every turn free: both rates are 0",
            "aixyz_sessions.E208",
            _TOKEN_HINT,
        )
    if spec is not None and not spec.metered:
        raise _error(
            f"{what} needs a metered price: with a fixed PRICE a turn settles that price "
            "whatever its tokens cost",
            "aixyz_sessions.E208",
            'Give UPTO = "$0.05" (the most a turn may cost) instead of PRICE, or an '
            'option with "scheme": "upto" in ACCEPTS.',
        )
    return rates


def _rate(value: object, what: str) -> Decimal:
    """One rate of ``TOKEN_PRICES``: dollars, zero or more."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise _error(
            f"{what} must be dollars as a str like '$0.0005', got {value!r}",
            "aixyz_sessions.E208",
            _TOKEN_HINT,
        )
    text = str(value).strip().removeprefix("$").strip()
    try:
        rate = Decimal(text) if "," not in text else None
    except InvalidOperation:
        rate = None
    if rate is None or not rate.is_finite() or rate < 0:
        raise _error(
            f"{what} must be a dollar amount of zero or more such as '$0.0005', got {value!r}",
            "aixyz_sessions.E208",
            _TOKEN_HINT,
        )
    return rate


def _skill_errors(skills: object) -> list[AgentConfigError]:
    if skills is None:
        return []
    hint = 'A list of {"id", "name", "description"} dicts (optional "tags", "examples").'
    if not isinstance(skills, list | tuple):
        return [_error(f"{SETTING}['SKILLS'] must be a list", "aixyz_sessions.E205", hint)]
    for skill in skills:
        if (
            not isinstance(skill, dict)
            or set(skill) - SKILL_KEYS
            or not all(isinstance(skill.get(k), str) and skill[k] for k in ("id", "name"))
            or not isinstance(skill.get("description", ""), str)
            or not all(isinstance(t, str) for t in skill.get("tags", []))
            or not all(isinstance(e, str) for e in skill.get("examples", []))
        ):
            return [
                _error(
                    f"{SETTING}['SKILLS'] has a bad skill: {skill!r}", "aixyz_sessions.E205", hint
                )
            ]
    return []


_REGISTRATION_HINT = (
    'For the ERC-8004 registration file: "IMAGE": "https://.../agent.png", '
    '"REGISTRATIONS": [{"agentId": 22, "agentRegistry": "eip155:<chainId>:0x<registry>"}], '
    '"SUPPORTED_TRUST": a list of "reputation", "crypto-economic", "tee-attestation".'
)


def _registration_errors(value: dict[str, Any]) -> list[AgentConfigError]:
    """E209: ``IMAGE``, ``REGISTRATIONS``, ``SUPPORTED_TRUST`` by the registration file's rules."""
    # The served file is checked by the same functions: a setting that
    # passes here cannot make a file that fails `aixyz_agent_registration`.
    from .registration import image_problem, registration_entry_problems, trust_problems

    problems: list[str] = []
    image = value.get("IMAGE")
    if image is not None and (why := image_problem(image)):
        problems.append(f"{SETTING}['IMAGE'] {why}")
    entries = value.get("REGISTRATIONS")
    if entries is not None:
        if not isinstance(entries, list | tuple):
            problems.append(f"{SETTING}['REGISTRATIONS'] must be a list, got {entries!r}")
        else:
            for i, entry in enumerate(entries):
                problems.extend(
                    f"{SETTING}['REGISTRATIONS'][{i}] {p}"
                    for p in registration_entry_problems(entry)
                )
    trust = value.get("SUPPORTED_TRUST")
    if trust is not None:
        problems.extend(f"{SETTING}['SUPPORTED_TRUST'] {p}" for p in trust_problems(trust))
    return [_error(p, "aixyz_sessions.E209", _REGISTRATION_HINT) for p in problems]


def parse_agent_config(value: object) -> AgentConfig:
    """Validate a value of ``AIXYZ_AGENT``; raise :class:`AgentConfigError`."""
    errors = agent_config_errors(value)
    if errors:
        raise errors[0]
    assert isinstance(value, dict)
    name = value["NAME"].strip()
    spec = turn_price(value, name=name)
    skills = value.get("SKILLS")
    return AgentConfig(
        name=name,
        description=value["DESCRIPTION"].strip(),
        spec=spec,
        version=str(value.get("VERSION", "1.0.0")).strip(),
        agent=value.get("AGENT"),
        skills=None if skills is None else tuple(dict(s) for s in skills),
        token_prices=parse_token_prices(value.get("TOKEN_PRICES"), spec),
        image=value.get("IMAGE"),
        registrations=tuple(dict(r) for r in value.get("REGISTRATIONS") or ()),
        supported_trust=tuple(value.get("SUPPORTED_TRUST") or ()),
        x402_extension_required=value.get("X402_EXTENSION_REQUIRED", False),
    )


_config: Lazy[AgentConfig] = lazy_setting(
    SETTING, build=lambda: parse_agent_config(getattr(settings, SETTING, None))
)


def get_agent_config() -> AgentConfig:
    """The process's parsed ``AIXYZ_AGENT`` (``AgentConfigError`` if it is missing or wrong)."""
    return _config.get()

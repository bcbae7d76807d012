"""The tool registry: one definition of an agent tool, served on every transport.

``@tool`` turns an async function into a :class:`Tool`: a name, a
description, an optional x402 price and a JSON input schema derived from the
function's type hints (through pydantic) or given explicitly. Arguments are
validated before the function runs, so a transport only has to turn
:class:`ToolArgumentsError` into its own "bad request" shape. A paid tool's
:class:`~aixyz_sessions.payments.decorators.PaidSpec` is built once, with the
tool, and every transport (HTTP, WebSocket, MCP) charges from it.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, get_type_hints

import jsonschema
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from ..metrics.instruments import record_tool
from ..payments.conf import X402ConfigError
from ..payments.decorators import PaidSpec, check_price, priced_spec
from ..payments.options import PriceOption, parse_accepts
from ..payments.sign_in import SignInPolicy, check_sign_in
from ..tracing import span

__all__ = ["Tool", "ToolArgumentsError", "ToolError", "ToolRegistry", "registry", "tool"]

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")

ToolFunction = Callable[..., Awaitable[Any]]


class ToolError(Exception):
    """A tool failed in a way its caller should read (not a server fault)."""


class ToolArgumentsError(ToolError):
    """The arguments do not match the tool's input schema.

    ``errors`` lists ``{"field": "a.b", "message": "..."}`` items.
    """

    def __init__(self, tool_name: str, errors: list[dict[str, str]]) -> None:
        self.tool_name = tool_name
        self.errors = errors
        detail = "; ".join(f"{e['field'] or '(arguments)'}: {e['message']}" for e in errors)
        super().__init__(f"invalid arguments for tool {tool_name!r}: {detail}")


@dataclass(frozen=True)
class Tool:
    """A registered tool. Call it with :meth:`call` (validates, then awaits the function).

    ``paid_spec`` is what a paid tool costs (``None`` for a free one), built
    from ``price`` and ``description`` when the tool is made, so a price that
    is not a dollar amount raises (``ValueError``/``TypeError``) there rather
    than at every call.
    """

    name: str
    description: str
    func: ToolFunction
    price: str | None = None
    input_schema: dict[str, Any] = field(default_factory=dict)
    _model: type[BaseModel] | None = field(default=None, repr=False, compare=False)
    sign_in: SignInPolicy | None = None
    #: Several payment options (see :mod:`~aixyz_sessions.payments.options`).
    accepts: tuple[PriceOption, ...] = ()
    #: A metered price: the most one call costs (x402 ``upto``; the tool calls ``charge()``).
    upto: str | None = None
    paid_spec: PaidSpec | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        what = f"tool {self.name!r}"
        sign_in = check_sign_in(self.sign_in, what=what)
        spec = None
        if self.price is not None or self.upto is not None or self.accepts:
            if sign_in == "required":
                raise X402ConfigError(
                    f'{what}: sign_in="required" takes no payment, so it has no price',
                    id="aixyz_sessions.E108",
                    hint='Drop the price, or use sign_in="after_payment".',
                )
            spec = priced_spec(
                what,
                price=self.price,
                upto=self.upto,
                accepts=self.accepts or None,
                description=self.description or None,
                sign_in=sign_in,
                resource=f"tool:{self.name}",
            )
        elif sign_in == "required":
            spec = PaidSpec(
                price="",
                description=self.description or None,
                sign_in=sign_in,
                resource=f"tool:{self.name}",
            )
        elif sign_in is not None:
            raise X402ConfigError(
                f"{what}: sign_in={sign_in!r} needs a price (sign-in after a payment for it)",
                id="aixyz_sessions.E108",
                hint='Give the tool a price, or use sign_in="required" for a free tool '
                "that needs a proven payer.",
            )
        object.__setattr__(self, "paid_spec", spec)  # frozen: set once, here

    @property
    def paid(self) -> bool:
        """Whether a call is charged (a sign-in-only tool is not)."""
        return self.paid_spec is not None and self.paid_spec.charges

    @property
    def price_label(self) -> str | None:
        """What a call costs, in words (``"$0.01"``, ``"up to $0.05"``); ``None`` when free."""
        return self.paid_spec.label if self.paid else None  # type: ignore[union-attr]

    @property
    def gated(self) -> bool:
        """Whether a call needs a payment or a sign-in (a proven payer)."""
        return self.paid_spec is not None

    def describe(self) -> dict[str, Any]:
        """The public description: name, description, input schema, price (and sign-in policy)."""
        described: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
            "price": self.price_label,
        }
        if self.sign_in is not None:
            described["sign_in"] = self.sign_in
        return described

    def validate(self, arguments: object) -> dict[str, Any]:
        """Check ``arguments`` against the schema; return the keyword arguments to call with."""
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise ToolArgumentsError(
                self.name,
                [{"field": "", "message": f"must be an object, not {type(arguments).__name__}"}],
            )
        if self._model is not None:
            try:
                parsed = self._model.model_validate(arguments)
            except ValidationError as exc:
                raise ToolArgumentsError(
                    self.name,
                    [
                        {
                            "field": ".".join(str(p) for p in err["loc"]),
                            "message": err["msg"],
                        }
                        for err in exc.errors(include_url=False)
                    ],
                ) from None
            return {name: getattr(parsed, name) for name in type(parsed).model_fields}
        validator = jsonschema.Draft202012Validator(self.input_schema)
        problems = sorted(validator.iter_errors(arguments), key=lambda e: list(e.path))
        if problems:
            raise ToolArgumentsError(
                self.name,
                [
                    {"field": ".".join(str(p) for p in err.path), "message": err.message}
                    for err in problems
                ],
            )
        return dict(arguments)

    async def call(self, arguments: object) -> Any:
        """Validate ``arguments``, run the tool, and check its result is JSON-serialisable."""
        return await self.run(self.validate(arguments))

    async def run(self, kwargs: dict[str, Any]) -> Any:
        """Run the tool with keyword arguments :meth:`validate` returned; a JSON result.

        Every transport and the agent's turns run tools here: this is where a
        tool call gets its ``execute_tool`` span and its latency sample.
        """
        started = time.perf_counter()
        ok = False
        with span(f"execute_tool {self.name}", self._span_attributes):
            try:
                result = await self.func(**kwargs)
                try:
                    json.dumps(result)
                except (TypeError, ValueError) as exc:
                    raise ToolError(
                        f"tool {self.name!r} returned a non-JSON result: {exc}"
                    ) from exc
                ok = True
                return result
            finally:
                record_tool(self.name, time.perf_counter() - started, ok)

    @functools.cached_property
    def _span_attributes(self) -> dict[str, Any]:
        """The OpenTelemetry GenAI attributes of an ``execute_tool`` span."""
        return {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": self.name,
            "gen_ai.tool.type": "function",
            "gen_ai.tool.description": self.description or None,
        }


def _model_for(name: str, func: ToolFunction) -> type[BaseModel]:
    signature = inspect.signature(func)
    hints = get_type_hints(func, include_extras=True)  # keep Annotated[..., Field(...)]
    fields: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {name!r}: *args / **kwargs cannot be described by a schema")
        annotation = hints.get(param.name, Any)
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (annotation, default)
    config = ConfigDict(extra="forbid", strict=False)
    model_name = "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]", name)) or "Tool"
    return create_model(f"{model_name}Arguments", __config__=config, **fields)


class ToolRegistry:
    """Tools by name. Registering a name twice is kept and reported by the system check."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}
        self._duplicates: list[str] = []
        self._lock = threading.Lock()

    def register(self, item: Tool) -> Tool:
        with self._lock:
            existing = self._tools.get(item.name)
            if existing is not None and existing.func is not item.func:
                self._duplicates.append(item.name)
            self._tools[item.name] = item
        return item

    def unregister(self, name: str) -> None:
        with self._lock:
            self._tools.pop(name, None)
            self._duplicates = [n for n in self._duplicates if n != name]

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def __iter__(self) -> Iterator[Tool]:
        return iter(sorted(self._tools.values(), key=lambda t: t.name))

    def __len__(self) -> int:
        return len(self._tools)

    @property
    def duplicates(self) -> list[str]:
        return sorted(set(self._duplicates))


#: The registry every transport serves.
registry = ToolRegistry()


def tool(
    func: ToolFunction | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    price: str | None = None,
    input_schema: dict[str, Any] | None = None,
    sign_in: SignInPolicy | None = None,
    accepts: list[dict[str, Any]] | None = None,
    upto: str | None = None,
    registry: ToolRegistry = registry,
) -> Any:
    """Register an async function as an agent tool.

    ``name`` defaults to the function name, ``description`` to its docstring;
    ``price`` (for example ``"$0.01"``) makes the tool paid through x402;
    ``upto="$0.05"`` makes it metered (the tool reports what a call used with
    :func:`~aixyz_sessions.payments.charge`), ``accepts=[...]`` offers
    several options (networks, assets; see :func:`~aixyz_sessions.payments.paid`);
    ``input_schema`` replaces the schema derived from the type hints (then the
    function receives the validated JSON object's items as keyword arguments).
    ``sign_in`` lets returning payers in with a wallet signature instead of a
    payment (``"after_payment"``, ``"after_any_payment"``), or makes a free
    tool need one (``"required"``); see :mod:`aixyz_sessions.payments.sign_in`.
    Usable bare (``@tool``) or with arguments (``@tool(name=...)``).
    """

    def register(fn: ToolFunction) -> ToolFunction:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"@tool needs an async function, got {fn!r}")
        tool_name = name or fn.__name__
        if not NAME_PATTERN.match(tool_name):
            raise ValueError(
                f"tool name {tool_name!r} must be 1-64 characters of letters, digits, '_', '-', '.'"
            )
        what = f"@tool {tool_name!r}"
        checked_price = None if price is None else check_price(price, what=what)
        checked_upto = None if upto is None else check_price(upto, what=what)
        options = () if accepts is None else parse_accepts(accepts, what=what)
        text = description or inspect.getdoc(fn) or ""
        if input_schema is not None:
            jsonschema.Draft202012Validator.check_schema(input_schema)
            model = None
            schema = input_schema
        else:
            model = _model_for(tool_name, fn)
            schema = model.model_json_schema()
        registry.register(
            Tool(
                tool_name,
                text,
                fn,
                price=checked_price,
                input_schema=schema,
                _model=model,
                sign_in=sign_in,
                accepts=options,
                upto=checked_upto,
            )
        )
        return fn

    if func is not None:
        return register(func)
    return register

"""A tool's arguments and prices in words, for the pages that list tools.

Shared by ``GET /tools/`` in Markdown (:mod:`.markdown`) and the demo's HTML
index, so both describe a schema and a price the same way.
"""

from __future__ import annotations

import json
from typing import Any

from .registry import Tool

__all__ = ["arguments_of", "price_options", "type_of"]


def type_of(schema: Any) -> str:
    """A short, readable type for a JSON schema: ``string``, ``string | null``..."""
    if not isinstance(schema, dict):
        return "any"
    if "const" in schema:
        return json.dumps(schema["const"])
    if "enum" in schema:
        return " | ".join(json.dumps(value) for value in schema["enum"])
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return " | ".join(dict.fromkeys(type_of(part) for part in schema[key]))
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(str(k) for k in kind)
    if kind == "array":
        return f"array of {type_of(schema.get('items'))}"
    if isinstance(kind, str):
        return kind
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return ref.rsplit("/", 1)[-1]
    return "any"


_CONSTRAINTS = (
    ("minimum", "min {}"),
    ("maximum", "max {}"),
    ("exclusiveMinimum", "> {}"),
    ("exclusiveMaximum", "< {}"),
    ("minLength", "at least {} chars"),
    ("maxLength", "at most {} chars"),
    ("minItems", "at least {} items"),
    ("maxItems", "at most {} items"),
    ("pattern", "matches {}"),
    ("format", "format {}"),
)


def arguments_of(item: Tool) -> list[dict[str, Any]]:
    """Each input argument of a tool: name, type, required, notes, description."""
    schema = item.input_schema if isinstance(item.input_schema, dict) else {}
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return []
    required = set(schema.get("required") or ())
    arguments = []
    for name, prop in properties.items():
        prop = prop if isinstance(prop, dict) else {}
        notes = [text.format(prop[key]) for key, text in _CONSTRAINTS if key in prop]
        if "default" in prop:
            notes.append(f"default {json.dumps(prop['default'])}")
        arguments.append(
            {
                "name": name,
                "type": type_of(prop),
                "required": name in required,
                "notes": notes,
                "description": str(prop.get("description") or ""),
            }
        )
    return arguments


def price_options(item: Tool) -> list[str]:
    """Each way to pay for a tool in words (joined by "or", they are its ``price_label``)."""
    if not item.paid or item.paid_spec is None:
        return []
    return [option.label() for option in item.paid_spec.options()]

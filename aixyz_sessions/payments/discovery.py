"""x402 "bazaar" discovery declarations (``AIXYZ_X402["DISCOVERY"] = True``).

With the setting on, every paid route's 402 declares the SDK's ``bazaar``
extension, which a facilitator reads (from the payment the client copies it
into) to catalog the resource. Only what is known is declared:

* a tool (``PaidSpec.resource`` ``"tool:<name>"``): ``POST`` with a JSON body whose
  schema is the tool's input schema, and an example body made from that schema
  (its defaults, examples, ``const`` or first ``enum`` value, else an empty
  value of its type). A schema no such example satisfies (a ``minLength``,
  say) is declared nowhere: the SDK's validator checks the example against the
  schema, and a declaration it refuses would only be dropped by facilitators;
* a paid view: the request's method (``GET``, ``HEAD`` or ``DELETE``) and no
  query schema. A view reached with another method declares nothing (what its
  body holds is not known).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from typing import Any

import jsonschema
from x402 import x402ResourceServer
from x402.extensions.bazaar import (
    BAZAAR,
    bazaar_resource_server_extension,
    declare_discovery_extension,
)
from x402.extensions.bazaar.types import is_query_method
from x402.http import HTTPRequestContext

from .adapter import route_template
from .decorators import PaidSpec

__all__ = [
    "DiscoveryEnricher",
    "DiscoveryResourceServer",
    "declare",
    "discovery_enricher",
    "example_of",
]

logger = logging.getLogger("aixyz_sessions.payments")

TOOL_RESOURCE = "tool:"
_EMPTY: dict[str, Any] = {
    "string": "",
    "integer": 0,
    "number": 0,
    "boolean": False,
    "array": [],
    "null": None,
}


def declare(spec: PaidSpec) -> dict[str, Any]:
    """The ``{"bazaar": ...}`` extensions for ``spec``'s 402 (empty: nothing to declare)."""
    name = (spec.resource or "").removeprefix(TOOL_RESOURCE)
    if spec.resource and spec.resource.startswith(TOOL_RESOURCE):
        from ..tools.registry import registry

        tool = registry.get(name)
        return {} if tool is None else _tool_declaration(tool.name, tool.input_schema)
    return declare_discovery_extension()  # GET-like; the method is the request's


def _tool_declaration(name: str, input_schema: dict[str, Any]) -> dict[str, Any]:
    body_schema = dict(input_schema)
    defs = body_schema.pop("$defs", None)
    body_schema.pop("$schema", None)
    example = example_of(input_schema, input_schema)
    try:
        jsonschema.Draft202012Validator(input_schema).validate(example)
    except jsonschema.ValidationError:
        logger.warning(
            "x402: tool %r gets no bazaar declaration: no example body fits its schema", name
        )
        return {}
    extensions = declare_discovery_extension(
        input=example if isinstance(example, dict) else None,
        input_schema=body_schema,
        body_type="json",
    )
    declaration = extensions[BAZAAR.key]
    declaration["info"]["input"]["method"] = "POST"
    if defs is not None:  # the schema's "#/$defs/..." references resolve at the root
        declaration["schema"]["$defs"] = defs
    return extensions


def example_of(schema: object, root: dict[str, Any], depth: int = 0) -> Any:
    """A value made from ``schema`` alone (see the module's docstring); ``None`` if none."""
    if not isinstance(schema, dict) or depth > 16:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = root.get("$defs", {}).get(ref.removeprefix("#/$defs/"))
        return example_of(target, root, depth + 1)
    for key in ("default", "const"):
        if key in schema:
            return schema[key]
    for key in ("examples", "enum"):
        if isinstance(schema.get(key), list) and schema[key]:
            return schema[key][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return example_of(schema[key][0], root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = kind[0] if kind else None
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties") or {}
        return {
            key: example_of(properties.get(key, {}), root, depth + 1)
            for key in schema.get("required") or ()
        }
    return _EMPTY.get(kind) if isinstance(kind, str) else None


class DiscoveryEnricher:
    """The ``bazaar`` resource-server extension: adds the request's method to a view's.

    A tool's declaration names its method already (``POST``) and is left as is.
    For a view, the SDK's own enrichment runs on a copy (it edits what it is
    given) with the view's Django URL pattern as the route pattern
    (``reports/<int:pk>/`` becomes the ``routeTemplate`` ``/reports/:pk/``, and
    the request's values its ``pathParams``), never the SDK's own (every paid
    route here is its catch-all ``*``, which it would declare as ``:var1``); a
    method that takes a body drops the declaration (the view's body is not known).
    """

    key = BAZAAR.key

    def enrich_declaration(self, declaration: Any, transport_context: Any) -> Any:
        if not isinstance(declaration, dict):
            return declaration
        if "method" in declaration.get("info", {}).get("input", {}):
            return declaration
        method = getattr(transport_context, "method", None)
        if not isinstance(method, str) or not is_query_method(method):
            return None  # left out of the 402 (see DiscoveryResourceServer)
        context = transport_context
        if isinstance(context, HTTPRequestContext):
            route = getattr(context.adapter, "get_route", lambda: None)()
            context = dataclasses.replace(context, route_pattern=route_template(route))
        return bazaar_resource_server_extension.enrich_declaration(
            copy.deepcopy(declaration), context
        )


discovery_enricher = DiscoveryEnricher()


class DiscoveryResourceServer(x402ResourceServer):
    """The SDK's resource server, leaving out a declaration its enrichment withdrew."""

    def enrich_extensions(self, declared: dict[str, Any], transport_context: Any) -> dict[str, Any]:
        enriched = super().enrich_extensions(declared, transport_context)
        return {key: value for key, value in enriched.items() if value is not None}

"""JSON from clients, with its nesting depth bounded before anything parses it.

Why this exists: ``eth_account`` imports ``py_ecc``, which raises the
interpreter's recursion limit to 100,000 for the whole process. With that
limit, CPython's C JSON decoder no longer stops at a ``RecursionError``: a
few hundred kilobytes of ``[[[[...`` overflow the C stack and the process
dies with a segmentation fault. So every place that parses JSON a client
sent (tool bodies, WebSocket messages, MCP requests, payment headers, the
local facilitator) first checks the depth here, in linear time, and refuses
a document nested deeper than :data:`MAX_JSON_DEPTH` with
:class:`JSONTooDeep` (a ``ValueError``), which the transports answer as a
client error.

Use :func:`loads` in your own views for request bodies too: the recursion
limit is raised in your process as soon as the x402 SDK is imported.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "JSONTooDeep", "check_depth", "loads"]

#: Deepest nesting of arrays and objects accepted from a client. x402 payloads
#: nest 4 levels, MCP requests about 6; tool arguments rarely pass 10.
MAX_JSON_DEPTH = 64

# A JSON string (escapes included) or one bracket. Strings are matched whole so
# that brackets inside them do not count.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)


class JSONTooDeep(ValueError):
    """The document nests arrays/objects deeper than allowed."""


def _openers(text: str | bytes) -> int:
    if isinstance(text, str):
        return text.count("[") + text.count("{")
    return text.count(b"[") + text.count(b"{")


def check_depth(text: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise :class:`JSONTooDeep` if ``text`` nests deeper than ``max_depth``.

    ``text`` need not be valid JSON (the parser judges that afterwards); this
    only bounds what the parser would have to recurse into. Costs one C-level
    count for any document with at most ``max_depth`` brackets, and one
    regular-expression pass otherwise.
    """
    if _openers(text) <= max_depth:
        return
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    depth = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > max_depth:
                raise JSONTooDeep(f"JSON nested deeper than {max_depth} levels")
        elif token in ("]", "}"):
            depth -= 1


def loads(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` after :func:`check_depth`; ``ValueError`` for anything unusable."""
    check_depth(text, max_depth)
    try:
        return json.loads(text)
    except RecursionError:  # a lower recursion limit than the depth bound
        raise JSONTooDeep("JSON nested too deeply") from None

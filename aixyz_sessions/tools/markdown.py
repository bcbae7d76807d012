"""``GET /tools/`` as Markdown, for agents that read documents rather than JSON.

The same facts as the JSON list (name, description, price, sign-in policy,
input schema), in the words of :mod:`.summary`. Names, descriptions and
argument texts come from developers; each is written on one line and a
leading Markdown block marker is escaped, so none of them can open a heading,
a list, a quote or a code fence and change the document's structure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from ..asgi.routing import MCP_PREFIX
from ..payments.headers import PAY_AND_REPEAT, PAYMENT_REQUIRED
from .registry import Tool
from .summary import arguments_of

__all__ = ["MARKDOWN_TYPES", "render"]

#: What a client sends in ``Accept`` to get this document (``text/x-markdown`` is the old name).
MARKDOWN_TYPES = ("text/markdown", "text/x-markdown")

# What opens a block when it starts a line: a heading, quote, list item,
# thematic break, setext underline, table row, fence, HTML block or ordered item.
_BLOCK_START = re.compile(r"^(?:[#>+\-*=|`~<_]|\d+[.)])")


def one_line(text: object) -> str:
    """``text`` on one line (every run of whitespace, newlines too, as one space), inert."""
    line = " ".join(str(text).split())
    if _BLOCK_START.match(line):
        line = "\\" + line if not line[0].isdigit() else re.sub(r"^(\d+)", r"\1\\", line)
    # A heading's closing "#"s are dropped by Markdown: keep a name's own.
    return re.sub(r"#+$", lambda m: "\\#" * len(m.group()), line)


def code(text: object) -> str:
    """``text`` as an inline code span, whatever backticks it holds (CommonMark's rule)."""
    value = " ".join(str(text).split())
    longest = max((len(run) for run in re.findall(r"`+", value)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def _argument(argument: dict[str, Any]) -> str:
    parts = [code(argument["name"]), f"({code(argument['type'])}, "]
    parts[1] += "required)" if argument["required"] else "optional)"
    notes = "; ".join(argument["notes"])
    about = " ".join(filter(None, [notes and f"{notes}.", argument["description"]]))
    return f"- {' '.join(parts)}" + (f": {' '.join(about.split())}" if about else "")


def _tool(item: Tool, list_path: str) -> list[str]:
    lines = [f"## {one_line(item.name)}", ""]
    if item.description.strip():
        lines += [one_line(item.description), ""]
    lines.append(f"- Price: {one_line(item.price_label or 'free')}")
    if item.sign_in is not None:
        lines.append(f"- Sign-in: {code(item.sign_in)}")
    url = list_path + quote(item.name, safe="")
    lines.append(f"- Call: {code(f'POST {url}')} with a JSON object of arguments")
    arguments = arguments_of(item)
    lines += ["", "Arguments:", ""] if arguments else ["- Arguments: none"]
    lines += [_argument(argument) for argument in arguments]
    return [*lines, ""]


def render(tools: Iterable[Tool], *, list_path: str, base: str, ws_base: str | None) -> str:
    """The document: title, how to pay and the other transports, then one section per tool.

    ``list_path`` is where the list is served (``/tools/``: a tool is called
    below it); ``ws_base`` (``ws://host``) is given when this process serves ``/mcp`` and
    the WebSocket; otherwise they are not mentioned.
    """
    pay = (
        f"Paid tools use x402: a call without payment is answered 402 with a "
        f"{code(PAYMENT_REQUIRED)} header; {PAY_AND_REPEAT}"
    )
    if ws_base is not None:
        pay += (
            f" The same tools, prices and sessions are served over MCP at "
            f"{code(base + MCP_PREFIX)} and over a WebSocket at {code(ws_base + '/ws/tools/')}."
        )
    lines = ["# Tools", "", pay, ""]
    tools = list(tools)
    if not tools:
        lines += ["No tools are registered.", ""]
    for item in tools:
        lines += _tool(item, list_path)
    return "\n".join(lines)

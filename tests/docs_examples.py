"""The fenced code blocks of README.md and the docs/ pages, for the tests that run them.

A test takes a block with ``block(page, first_line, containing="")``, page as
a literal path such as ``"docs/stores.md"``; where a test is parametrized, the
same three strings are a literal tuple ``(page, first_line[, containing])``.
``tests/test_docs.py`` reads those literals from the test sources to know
which blocks some test runs, so keep them literal.

A block no test runs carries, on the line just above its opening fence,
``<!-- not-run: why -->``. Shell blocks (``sh``) are commands to type and
need neither.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SHELL_KINDS = frozenset({"sh", "bash", "shell", "console"})

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)(?P<lang>[\w+-]*)\s*$")
_NOT_RUN = re.compile(r"^\s*<!--\s*not-run:(?P<why>.*?)-->\s*$")


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository root: "README.md", "docs/stores.md"
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    not_run: str | None  # the reason of a not-run marker just above, if any

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def pages() -> list[str]:
    """README.md and every Markdown page under docs/."""
    found = sorted(p.relative_to(ROOT).as_posix() for p in DOCS.rglob("*.md"))
    return ["README.md", *found]


def parse(page: str) -> list[Block]:
    """Every fenced block of ``page`` (indented ones too, dedented)."""
    lines = (ROOT / page).read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        previous = next((s for s in reversed(lines[:i]) if s.strip()), "")
        marker = _NOT_RUN.match(previous)
        body: list[str] = []
        j = i + 1
        while j < len(lines) and lines[j].strip() != fence:
            body.append(lines[j][indent:] if lines[j][:indent].isspace() else lines[j])
            j += 1
        assert j < len(lines), f"{page}:{i + 1}: code block never closed"
        code = "\n".join(body) + "\n"
        why = marker["why"].strip() if marker else None
        blocks.append(Block(page, i + 1, opening["lang"], code, why))
        i = j + 1
    return blocks


def find(page: str, first_line: str, containing: str = "") -> list[Block]:
    return [b for b in parse(page) if b.code.startswith(first_line) and containing in b.code]


def block(page: str, first_line: str, containing: str = "") -> str:
    """The code of the one block on ``page`` that starts with ``first_line``."""
    found = find(page, first_line, containing)
    assert len(found) == 1, f"{page} has {len(found)} code blocks starting {first_line!r}" + (
        f" and containing {containing!r}" if containing else ""
    )
    return found[0].code

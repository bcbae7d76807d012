"""The docs hold together: every code block is run by a test or says why not.

The convention (also in ``tests/docs_examples.py`` and on docs/index.md):

* a test takes a block with ``block("docs/<page>.md", "<first line>"[, "<containing>"])``
  or, where it is parametrized, a literal tuple of the same strings; this file
  reads those literals from the test sources (no test has to run first);
* a block no test runs carries ``<!-- not-run: <why> -->`` on the line just
  above its opening fence;
* shell blocks (``sh``) are commands to type (``make``, ``pip``,
  ``manage.py``, ``curl``) and are exempt by kind.

The rest: the MkDocs nav lists every page, README.md stays a short quick
start that links every page, and the reference page lists every check id.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.docs_examples import DOCS, ROOT, SHELL_KINDS, Block, find, pages, parse

TESTS = Path(__file__).resolve().parent
README_MAX_LINES = 250


def _strings(node: ast.AST) -> tuple[str, ...] | None:
    """The string literals of a ``block(...)`` call's arguments or of a tuple."""
    parts = node.args if isinstance(node, ast.Call) else getattr(node, "elts", [])
    if not 2 <= len(parts) <= 3:
        return None
    if not all(isinstance(p, ast.Constant) and isinstance(p.value, str) for p in parts):
        return None
    values = tuple(p.value for p in parts)  # type: ignore[attr-defined]
    return values if values[0] in pages() else None


def references() -> list[tuple[str, tuple[str, ...]]]:
    """``(where, (page, first_line[, containing]))`` for every reference in the tests."""
    found = []
    for source in sorted(TESTS.rglob("*.py")):
        tree = ast.parse(source.read_text(), filename=str(source))
        for node in ast.walk(tree):
            is_call = isinstance(node, ast.Call) and getattr(node.func, "id", None) == "block"
            if is_call or isinstance(node, ast.Tuple):
                ref = _strings(node)
                if ref is not None:
                    found.append((f"{source.relative_to(ROOT)}:{node.lineno}", ref))
    return found


def all_blocks() -> list[Block]:
    return [b for page in pages() for b in parse(page)]


def test_every_reference_names_one_block() -> None:
    refs = references()
    assert refs, "no test references a docs block: the scan is broken"
    wrong = []
    for where, ref in refs:
        count = len(find(*ref))
        if count != 1:
            wrong.append(f"{where}: {ref!r} matches {count} blocks")
    assert not wrong, "\n".join(wrong)


def test_every_code_block_is_run_or_says_why_not() -> None:
    run = {(b.page, b.line) for _, ref in references() for b in find(*ref)}
    problems = []
    checked = 0
    for b in all_blocks():
        if b.lang in SHELL_KINDS:
            continue
        checked += 1
        claimed = (b.page, b.line) in run
        if b.not_run is not None and not b.not_run:
            problems.append(f"{b.where}: the not-run marker gives no reason")
        elif claimed and b.not_run is not None:
            problems.append(f"{b.where}: a test runs this block; drop its not-run marker")
        elif not claimed and b.not_run is None:
            problems.append(
                f"{b.where}: this ```{b.lang or '(no language)'} block is run by no test; "
                "run it with tests.docs_examples.block(...) or put "
                "<!-- not-run: why --> just above it"
            )
    assert checked > 20, f"only {checked} non-shell blocks found: the parser is broken"
    assert not problems, "\n".join(problems)


def test_blocks_have_a_language() -> None:
    bare = [b.where for b in all_blocks() if not b.lang]
    assert not bare, f"give these blocks a language (python, sh, text...): {bare}"


def test_mkdocs_nav_lists_every_page() -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    listed = re.findall(r"^\s*- [^:\n]+: (\S+\.md)\s*$", config, re.M)
    on_disk = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert sorted(listed) == on_disk
    assert len(listed) == len(set(listed)), "a page is listed twice"
    assert re.search(r"^theme:\n  name: material$", config, re.M)


def test_readme_is_a_short_quick_start_linking_every_page() -> None:
    readme = (ROOT / "README.md").read_text()
    lines = readme.count("\n")
    assert lines < README_MAX_LINES, f"README.md has {lines} lines; move detail to docs/"
    for command in ("make demo", "make test"):
        assert f"```sh\n{command}" in readme or f"\n{command} " in readme, command
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if "://" not in t]
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README links to missing files: {missing}"
    pages_linked = {t for t in local if t.startswith("docs/") and t.endswith(".md")}
    every_page = {p for p in pages() if p != "README.md"}
    assert pages_linked == every_page, sorted(every_page ^ pages_linked)


@pytest.mark.parametrize("page", [p for p in pages() if p != "README.md"])
def test_docs_links_stay_inside_docs(page: str) -> None:
    """A relative link out of docs/ works on GitHub but breaks the built site."""
    text = (ROOT / page).read_text()
    outside = [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if t.startswith("../")]
    assert not outside, f"{page} links outside docs/: {outside}"


def test_reference_lists_every_check_id() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "aixyz_sessions").rglob("*.py"))
    defined = set(re.findall(r"aixyz_sessions\.([EW]\d{3})\b", source))
    assert defined, "no check ids found in aixyz_sessions/: the scan is broken"
    reference = (DOCS / "reference.md").read_text()
    listed = set(re.findall(r"^\| `([EW]\d{3})` \|", reference, re.M))
    assert defined <= listed, f"add to docs/reference.md: {sorted(defined - listed)}"
    assert listed <= defined, f"no longer in the code: {sorted(listed - defined)}"

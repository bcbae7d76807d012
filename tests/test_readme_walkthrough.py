"""docs/install.md's "From an empty folder to a paid call", run literally in an empty folder.

``django-admin startproject``, ``startapp``, the page's files written as
it says, ``migrate`` and ``check`` (first with Django's own ``asgi.py``, which
W014 names), then uvicorn on loopback and the page's paying client.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.docs_examples import block
from tests.payments_helpers import free_port
from tests.test_readme import run


def _env() -> dict[str, str]:
    """The user's shell: no test settings module, this interpreter's packages."""
    return {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}


def _run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, *args], cwd=folder, env=_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _write(folder: Path, example: tuple[str, str], *, append: bool = False) -> None:
    """The block ``(page, "# <file>: ...")`` written to that file."""
    code = block(*example)
    target = folder / example[1].removeprefix("# ").split(":")[0]
    if append:
        code = target.read_text() + "\n" + code
    target.write_text(code)


@contextmanager
def _uvicorn(folder: Path) -> Iterator[tuple[str, list[str]]]:
    """``uvicorn mysite.asgi:application`` on a free port; its URL and its log lines so far."""
    port = free_port()
    log = folder / f"uvicorn-{port}.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "mysite.asgi:application", "--port", str(port)],
            cwd=folder,
            env=_env(),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                httpx.get(f"{url}/admin/login/", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        yield url, log.read_text().splitlines()
    finally:
        process.terminate()
        process.wait(10)


def test_from_an_empty_folder_to_a_paid_call(tmp_path: Path) -> None:
    _run(tmp_path, "-m", "django", "startproject", "mysite", ".")  # django-admin startproject
    _run(tmp_path, "manage.py", "startapp", "notes")
    _write(tmp_path, ("docs/install.md", "# mysite/settings.py: add at the end"), append=True)
    for example in (
        ("docs/install.md", "# notes/views.py: a paid view"),
        ("docs/install.md", "# notes/tools.py: a tool"),
        ("docs/install.md", "# mysite/urls.py: replace the file"),
    ):
        _write(tmp_path, example)
    _run(tmp_path, "manage.py", "migrate", "--noinput")

    # Django's own asgi.py still in place: check and the server's start both say so.
    checked = _run(tmp_path, "manage.py", "check")
    assert "aixyz_sessions.W014" in checked.stdout + checked.stderr
    with _uvicorn(tmp_path) as (url, lines):
        assert any("/mcp answers 404" in line for line in lines), lines
        assert httpx.post(f"{url}/mcp", json={}, timeout=10).status_code == 404

    _write(tmp_path, ("docs/install.md", "# mysite/asgi.py: replace the file"))
    checked = _run(tmp_path, "manage.py", "check")
    assert "no issues" in checked.stdout, checked.stdout + checked.stderr
    with _uvicorn(tmp_path) as (url, lines):
        assert not any("/mcp answers 404" in line for line in lines), lines
        asked = httpx.get(f"{url}/note/", timeout=10)  # the page's curl
        assert asked.status_code == 402 and "PAYMENT-REQUIRED" in asked.headers
        css = httpx.get(f"{url}/static/admin/css/base.css", timeout=10)
        assert css.status_code == 200  # the admin is styled in development
        main = run(block("docs/install.md", "# pay.py"))["main"]
        paid = asyncio.run(main(url))
        assert paid.status_code == 200, paid.text
        assert paid.json()["note"] == "hello" and paid.json()["payer"].startswith("0x")
        listed = httpx.post(
            f"{url}/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
            headers={"Accept": "application/json, text/event-stream"},
            timeout=10,
        )
        assert listed.status_code != 404 and "read_note" in listed.text, listed.text

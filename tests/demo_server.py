"""Run the real demo (``demo_project.asgi`` under uvicorn) in a subprocess for end-to-end tests.

Each server gets a fresh SQLite file in a temporary folder, migrated and with
a known admin user (``demo_setup``), on a free loopback port, with the demo's
embedded defaults (database store, local facilitator) whatever the caller's
environment says.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.payments_helpers import free_port

ROOT = Path(__file__).resolve().parent.parent
ADMIN_USER = "demo-admin"
ADMIN_PASSWORD = "demo-password-for-tests"
#: Variables that would move the demo off its embedded defaults.
OVERRIDES = (
    "AIXYZ_DEMO_STORE",
    "REDIS_URL",
    "DATABASE_URL",
    "X402_FACILITATOR_URL",
    "X402_PAY_TO",
    "X402_NETWORK",
    "X402_ORIGIN",
    "AIXYZ_DEMO_CHANNELS",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_MODEL",
    "DJANGO_DEBUG",
    "DJANGO_ALLOWED_HOSTS",
)


@dataclass(frozen=True)
class DemoServer:
    url: str
    env: dict[str, str]
    log: Path

    def manage(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``python manage.py ARGS`` with the demo's settings and database."""
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def paid_put(self, key: str, value: str, *, account: Any = None) -> str:
        """Store ``key`` through a real paid call as a fresh payer (or ``account``); its address."""
        return self.paid_puts({key: value}, account=account)

    def paid_puts(self, entries: dict[str, str], *, account: Any = None, parallel: int = 8) -> str:
        """Store each entry through its own real paid HTTP call, all as one payer; its address.

        The payer is a fresh account unless ``account`` (an ``eth_account``
        local account) is given; up to ``parallel`` calls run at once.
        """
        from eth_account import Account
        from x402 import x402Client
        from x402.http.clients.httpx import x402HttpxClient
        from x402.mechanisms.evm.exact import register_exact_evm_client

        if account is None:
            account = Account.create()
        client = x402Client()
        register_exact_evm_client(client, account)

        async def call() -> None:
            slots = asyncio.Semaphore(parallel)
            async with x402HttpxClient(client, base_url=self.url, timeout=30) as http:

                async def put(key: str, value: str) -> None:
                    async with slots:
                        response = await http.post(
                            "/tools/put-content", json={"key": key, "value": value}
                        )
                    assert response.status_code == 200, response.text
                    result = response.json()["result"]
                    assert result == {"success": True, "key": key, "value": value}

                await asyncio.gather(*(put(key, value) for key, value in entries.items()))

        asyncio.run(call())
        return str(account.address)


def demo_env(folder: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OVERRIDES}
    env.update(extra or {})
    env.update(
        DJANGO_SETTINGS_MODULE="demo_project.settings",
        AIXYZ_DEMO_SQLITE=str(folder / "demo.sqlite3"),
        AIXYZ_DEMO_ADMIN_USER=ADMIN_USER,
        AIXYZ_DEMO_ADMIN_PASSWORD=ADMIN_PASSWORD,
        PYTHONUNBUFFERED="1",
    )
    return env


@contextmanager
def demo_server(
    folder: Path, env: dict[str, str] | None = None, *, name: str = "uvicorn"
) -> Iterator[DemoServer]:
    """Migrate, create the admin, serve the demo; stop it afterwards.

    ``env`` adds variables for the demo (``AIXYZ_DEMO_STORE``, say) on top of
    the embedded defaults. Two servers on one ``folder`` share its SQLite
    database (two worker processes of one deployment); give each its own
    ``name`` (its log file).
    """
    env = demo_env(folder, env)
    log = folder / f"{name}.log"
    server = DemoServer("", env, log)
    for args in (("migrate", "--noinput"), ("demo_setup",)):
        done = server.manage(*args)
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "demo_project.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    with running(process, f"{url}/tools/", log, "the demo server"):
        yield DemoServer(url, env, log)


@contextmanager
def running(process: subprocess.Popen[Any], probe: str, log: Path, what: str) -> Iterator[None]:
    """``process`` once ``probe`` answers 200 (30 s at most); stopped afterwards."""
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{what} exited:\n{log.read_text()}")
            try:
                if httpx.get(probe, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def admin_client(url: str) -> httpx.Client:
    """An httpx client logged into the demo's admin (CSRF token and session cookie)."""
    client = httpx.Client(base_url=url, timeout=10, follow_redirects=True)
    page = client.get("/admin/login/")
    token = client.cookies.get("csrftoken")
    assert page.status_code == 200 and token, page.text[:300]
    response = client.post(
        "/admin/login/?next=/admin/",
        data={
            "username": ADMIN_USER,
            "password": ADMIN_PASSWORD,
            "csrfmiddlewaretoken": token,
            "next": "/admin/",
        },
        headers={"Referer": f"{url}/admin/login/"},
    )
    assert response.status_code == 200 and "Log out" in response.text, response.text[:500]
    return client

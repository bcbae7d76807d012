"""The deployment recipe: Dockerfile, compose.yaml, deploy/entrypoint.sh, settings_production.

Nothing here needs a Docker daemon except the image build, which skips without
one. The rest runs what the image runs, on this machine: the production
settings with the environment compose gives the ``web`` service, and the
entrypoint itself, serving the demo on PostgreSQL and Redis (a database made
for this module and Redis DB 12).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.demo_server import DemoServer
from tests.payments_helpers import free_port
from tests.services import PG_HOST, PG_PORT, REDIS_HOST, REDIS_PORT, need_postgres, need_redis

ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = ROOT / "deploy" / "entrypoint.sh"
PRODUCTION = "demo_project.settings_production"
TEST_DATABASE = "aixyz_deploy_test"
TEST_REDIS_DB = 12
METRICS_TOKEN = "deployment-metrics-token-0123456789"


def settled_calls(exposition: str, resource: str) -> float:
    """Settled paid calls of ``resource`` in a ``/metrics`` answer."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "aixyz_paid_calls_total"
        and sample.labels.get("resource") == resource
        and sample.labels.get("outcome") == "settled"
    )


#: What a user writes into .env, for the variables deploy/.env.example leaves empty.
USER_VALUES = {
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "POSTGRES_PASSWORD": secrets.token_hex(24),
    "DJANGO_ALLOWED_HOSTS": "api.example.com",
    "X402_ORIGIN": "https://api.example.com",
    "X402_PAY_TO": "0x1111111111111111111111111111111111111111",
}
#: The only variables taken from the caller's environment: nothing that configures the demo.
PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")


# --- compose.yaml, read as `docker compose` reads it ---------------------------------

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<bare>\w+))"
)


class MissingVariable(Exception):
    """A ``${VAR:?message}`` whose variable is unset (compose refuses to start)."""


def interpolate(value: str, variables: dict[str, str]) -> str:
    """``value`` with compose's ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR:?err}``."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        present = name in variables and (variables[name] != "" or not (op or "").startswith(":"))
        if present:
            return variables[name]
        if op in (":?", "?"):
            raise MissingVariable(f"{name}: {arg}")
        return arg if op in (":-", "-") else ""

    return _VARIABLE.sub(replace, value)


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return data


def env_example() -> dict[str, str]:
    """deploy/.env.example as ``{name: value}`` (what ``cp deploy/.env.example .env`` gives)."""
    values = {}
    for line in (ROOT / "deploy" / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def web_environment(variables: dict[str, str]) -> dict[str, str]:
    """The ``web`` service's environment once compose has interpolated ``variables``."""
    raw = compose()["services"]["web"]["environment"]
    assert isinstance(raw, dict), "web.environment: use the NAME: value form"
    return {name: interpolate(str(value), variables) for name, value in raw.items()}


def compose_environment() -> dict[str, str]:
    """What compose gives ``web`` from a .env copied from the example and filled in."""
    return web_environment({**env_example(), **USER_VALUES})


# --- The Dockerfile ---------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    lines = [
        line
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if not line.lstrip().startswith("#")
    ]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    return [
        (word.upper(), rest.strip())
        for word, _, rest in (line.strip().partition(" ") for line in text.splitlines())
        if word
    ]


def instructions(name: str) -> list[str]:
    return [arguments for word, arguments in dockerfile() if word == name]


def installed_extras() -> set[str]:
    """The extras of the project that the image's ``pip install ".[...]"`` names."""
    (extras,) = [
        match[1] for step in instructions("RUN") for match in re.finditer(r'"\.\[([\w,]+)\]"', step)
    ]
    return set(extras.split(","))


def dockerfile_env() -> dict[str, str]:
    found = {}
    for arguments in instructions("ENV"):
        for pair in re.findall(r"(\w+)=(\S+)", arguments):
            found[pair[0]] = pair[1]
    return found


# --- Processes ----------------------------------------------------------------------------


def base_env(extra: dict[str, str]) -> dict[str, str]:
    """A clean environment: the venv's ``python`` first on PATH, then ``extra``."""
    env = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run(args: list[str], env: dict[str, str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    options: dict[str, Any] = {"cwd": ROOT, "timeout": 60}
    options.update(kwargs)
    return subprocess.run(args, env=env, capture_output=True, text=True, check=False, **options)


def missing_variables(env: dict[str, str]) -> list[str]:
    """The variables the production settings name as missing under ``env``."""
    done = run([sys.executable, "-c", f"import {PRODUCTION}"], base_env(env))
    assert done.returncode != 0, "the production settings loaded without their variables"
    assert "ImproperlyConfigured" in done.stderr, done.stderr
    return re.findall(r"^  ([A-Z][A-Z0-9_]+): ", done.stderr, flags=re.MULTILINE)


@pytest.fixture(scope="module")
def services() -> Iterator[dict[str, str]]:
    """A fresh PostgreSQL database and an empty Redis DB 12; their URLs."""
    need_postgres()
    need_redis()
    import psycopg
    import redis

    def admin(sql: str) -> None:
        with psycopg.connect(
            host=PG_HOST, port=PG_PORT, user="postgres", dbname="postgres", autocommit=True
        ) as connection:
            connection.execute(sql)

    cache = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=TEST_REDIS_DB)
    admin(f"DROP DATABASE IF EXISTS {TEST_DATABASE} WITH (FORCE)")
    admin(f"CREATE DATABASE {TEST_DATABASE}")
    cache.flushdb()
    try:
        yield {
            "DATABASE_URL": f"postgres://postgres@{PG_HOST}:{PG_PORT}/{TEST_DATABASE}",
            "REDIS_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{TEST_REDIS_DB}",
        }
    finally:
        cache.flushdb()
        cache.close()
        admin(f"DROP DATABASE IF EXISTS {TEST_DATABASE} WITH (FORCE)")


# --- The image ----------------------------------------------------------------------------


def test_image_builds_and_runs_as_a_non_root_user() -> None:
    try:
        info = run(["docker", "info"], dict(os.environ), timeout=30)
        failure = info.stderr.strip().splitlines()[-1:] if info.returncode else []
    except FileNotFoundError:
        failure = ["docker is not installed"]
    except subprocess.TimeoutExpired:
        failure = ["no answer in 30 s"]
    if failure:
        # Not a CI failure either: CI runs `make test` without a Docker daemon.
        pytest.skip(
            "no docker daemon here: the image build is not tested "
            f"(docker info failed: {failure[0] if failure else '?'}); skipped under CI=true too"
        )
    tag = "aixyz-sessions-demo:test"
    built = run(["docker", "build", "--tag", tag, "."], dict(os.environ), timeout=1200)
    assert built.returncode == 0, built.stderr[-3000:]
    user = run(["docker", "run", "--rm", tag, "id", "-u"], dict(os.environ), timeout=120)
    assert user.returncode == 0 and user.stdout.strip() not in ("", "0"), user
    imports = run(
        ["docker", "run", "--rm", tag, "python", "-c", "import aixyz_sessions, uvicorn, redis"],
        dict(os.environ),
        timeout=120,
    )
    assert imports.returncode == 0, imports.stderr


def test_dockerfile_is_a_slim_multi_stage_image_for_a_non_root_user() -> None:
    stages = instructions("FROM")
    assert stages[0] == "python:3.11-slim AS builder"
    assert stages[-1].split()[0] == "python:3.11-slim"
    assert any(copy.startswith("--from=builder /opt/venv") for copy in instructions("COPY"))
    assert instructions("USER") and instructions("USER")[-1] not in ("root", "0")
    assert instructions("EXPOSE") == ["8000"]
    assert installed_extras() >= {"redis", "postgres", "serve"}
    (healthcheck,) = instructions("HEALTHCHECK")
    assert "/healthz" in healthcheck and "urllib" in healthcheck and "curl" not in healthcheck
    assert instructions("ENTRYPOINT") == ['["/app/deploy/entrypoint.sh"]']


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for name in (".venv", ".git", "db.sqlite3", "**/__pycache__", "site", ".env"):
        assert name in ignored


def test_healthcheck_reaches_healthz_with_an_allowed_host() -> None:
    """The HEALTHCHECK command, run here against a stub: the path and Host header it sends."""
    (healthcheck,) = instructions("HEALTHCHECK")
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3 :])
    assert command[:2] == ["python", "-c"]
    import http.server
    import threading

    seen: list[tuple[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, self.headers["Host"]))
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = base_env({"PORT": str(server.server_port), "X402_ORIGIN": "https://api.example.com"})
        done = run([sys.executable, *command[1:]], env, timeout=20)
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr
    assert seen == [("/healthz", "api.example.com")]


# --- compose.yaml ---------------------------------------------------------------------------


def test_compose_has_web_postgres_and_redis_with_health_checks() -> None:
    services = compose()["services"]
    assert set(services) == {"web", "postgres", "redis"}
    assert services["web"]["build"] == "."
    assert services["web"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    assert services["postgres"]["image"] == "postgres:16"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["postgres"]["volumes"], "PostgreSQL data must outlive the container"
    assert services["redis"]["image"] == "redis:7"
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "noeviction" in services["redis"]["command"]
    # Every documented variable set in .env reaches the server, not only those listed.
    assert services["web"]["env_file"] == [{"path": ".env", "required": False}]


def test_compose_refuses_to_start_without_a_secret_key() -> None:
    """A fresh checkout (no .env) and an unedited copy of the example both stop compose."""
    with pytest.raises(MissingVariable, match="DJANGO_SECRET_KEY"):
        web_environment({})
    with pytest.raises(MissingVariable, match="DJANGO_SECRET_KEY"):
        web_environment(env_example())
    required = set(re.findall(r"\$\{(\w+):\?", yaml.safe_dump(compose())))
    example = env_example()
    assert required <= set(example), "deploy/.env.example must list every required variable"
    assert all(example[name] == "" for name in required), "no placeholder may pass for a value"


def test_web_service_provides_every_variable_the_production_settings_require() -> None:
    required = missing_variables({"DJANGO_SETTINGS_MODULE": PRODUCTION})
    assert {"DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL", "X402_ORIGIN"} <= set(required)
    environment = compose_environment()
    assert [name for name in required if not environment.get(name)] == []
    assert environment["X402_FACILITATOR_URL"].startswith("https://")


def test_settings_module_and_entrypoint_agree_with_the_dockerfile() -> None:
    assert compose_environment()["DJANGO_SETTINGS_MODULE"] == PRODUCTION
    assert dockerfile_env()["DJANGO_SETTINGS_MODULE"] == PRODUCTION
    assert f"DJANGO_SETTINGS_MODULE:={PRODUCTION}" in ENTRYPOINT.read_text()
    assert "entrypoint" not in compose()["services"]["web"], "the image's entrypoint runs"
    assert os.access(ENTRYPOINT, os.X_OK)


# --- The production settings --------------------------------------------------------------


def test_the_image_installs_what_the_production_settings_use() -> None:
    """Each optional part the settings turn on has its extra in the image (or `check` fails)."""
    show = (
        f"import json, {PRODUCTION} as s; print(json.dumps([s.CACHES.get('sessions', {{}}), "
        "s.DATABASES['default']['ENGINE'], getattr(s, 'AIXYZ_METRICS', None) is not None]))"
    )
    done = run([sys.executable, "-c", show], base_env(compose_environment()))
    assert done.returncode == 0, done.stderr
    sessions_cache, engine, metrics = json.loads(done.stdout)
    extras = installed_extras()
    assert "redis" in extras or "Redis" not in sessions_cache.get("BACKEND", "")
    assert "postgres" in extras or "postgresql" not in engine
    assert "prometheus" in extras or not metrics, "AIXYZ_METRICS needs prometheus-client (E301)"
    assert "serve" in extras  # uvicorn, which the entrypoint runs


def test_a_missing_secret_key_stops_the_settings_and_is_named() -> None:
    env = compose_environment()
    del env["DJANGO_SECRET_KEY"]
    assert missing_variables(env) == ["DJANGO_SECRET_KEY"]


def test_no_facilitator_url_is_refused_unless_the_local_one_is_allowed() -> None:
    env = compose_environment()
    del env["X402_FACILITATOR_URL"]
    assert missing_variables(env) == ["X402_FACILITATOR_URL"]
    done = run([sys.executable, "-c", f"import {PRODUCTION}"], base_env(env))
    assert "NO MONEY MOVES" in done.stderr
    allowed = run(
        [sys.executable, "-c", f"import {PRODUCTION} as s; print(s.AIXYZ_X402['FACILITATOR'])"],
        base_env({**env, "AIXYZ_ALLOW_LOCAL_FACILITATOR": "1"}),
    )
    assert allowed.returncode == 0 and allowed.stdout.strip() == "local", allowed.stderr


def test_check_deploy_is_clean_with_the_compose_environment(
    services: dict[str, str], tmp_path: Path
) -> None:
    # What the entrypoint adds before it checks: the workers' metrics directory (W300).
    env = {**compose_environment(), **services, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    done = run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)
    assert done.returncode == 0, done.stdout + done.stderr
    # Nothing silenced either: the compose defaults opt out of no check.
    assert done.stdout.strip() == "System check identified no issues (0 silenced).", done.stdout
    assert "WARNING" not in done.stderr


def test_the_entrypoint_refuses_a_weak_secret_key_before_touching_the_database() -> None:
    env = {
        **compose_environment(),
        "DJANGO_SECRET_KEY": "change-me",
        "DATABASE_URL": "postgres://nobody@127.0.0.1:1/nothing",  # never reached
        "REDIS_URL": "redis://127.0.0.1:1/0",
    }
    done = run([str(ENTRYPOINT)], base_env(env))
    assert done.returncode != 0
    assert "security.W009" in done.stderr + done.stdout


# --- The entrypoint --------------------------------------------------------------------------


def test_the_entrypoint_runs_its_arguments_instead(tmp_path: Path) -> None:
    """No check, no migration: a one-off command runs even on an unconfigured server."""
    show = "import os; print(os.environ['DJANGO_SETTINGS_MODULE'], os.getcwd())"
    done = run([str(ENTRYPOINT), "python", "-c", show], base_env({}), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [PRODUCTION, str(ROOT)]
    assert run([str(ENTRYPOINT), "python", "-c", "print(1)"], base_env({})).stdout == "1\n"
    assert run([str(ENTRYPOINT), "false"], base_env({})).returncode == 1


def stop(process: subprocess.Popen[Any]) -> int:
    """SIGTERM to the server's process group (uvicorn and its workers); its exit status."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        return process.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)
        raise
    except ProcessLookupError:
        return process.wait(5)


def test_the_entrypoint_serves_the_demo_on_postgres_and_redis(
    services: dict[str, str], tmp_path: Path
) -> None:
    import redis

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = compose_environment()
    del env["X402_FACILITATOR_URL"]
    env.update(
        services,
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        X402_ORIGIN=url,
        SECURE_SSL_REDIRECT="0",  # no TLS here
        AIXYZ_ALLOW_LOCAL_FACILITATOR="1",
        BIND_HOST="127.0.0.1",
        AIXYZ_METRICS_TOKEN=METRICS_TOKEN,
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        PORT=str(port),
        WEB_CONCURRENCY="2",
        STATIC_ROOT=str(tmp_path / "static"),
    )
    log = tmp_path / "entrypoint.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(ENTRYPOINT)],
            cwd=ROOT,
            env=base_env(env),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: uvicorn's workers stop with it
        )
    try:
        deadline = time.monotonic() + 45
        while True:
            assert process.poll() is None, f"the entrypoint exited:\n{log.read_text()}"
            try:
                health = httpx.get(f"{url}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, f"no /healthz in 45 s:\n{log.read_text()}"
                time.sleep(0.2)
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        ready = httpx.get(f"{url}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {
            "store": "ok",
            "replay_guard": "ok",
            "facilitator": "ok",
            "channels": "off",  # off in production unless AIXYZ_DEMO_CHANNELS=1
        }

        login = httpx.get(f"{url}/admin/login/", timeout=10)
        assert login.status_code == 200 and "/static/admin/css/base.css" in login.text
        assert login.headers["X-Frame-Options"] == "DENY"
        css = httpx.get(f"{url}/static/admin/css/base.css", timeout=10)
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        assert (tmp_path / "static" / "admin" / "css" / "base.css").is_file()  # collectstatic

        tools = httpx.get(f"{url}/tools/", timeout=10)
        assert "put-content" in {tool["name"] for tool in tools.json()["tools"]}
        assert httpx.post(f"{url}/tools/put-content", json={}, timeout=10).status_code == 402
        payer = DemoServer(url, env, log).paid_put("deployed", "yes")
        keys = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=TEST_REDIS_DB).keys("*")
        assert any(payer.lower() in key.decode().lower() for key in keys), keys
        # Whichever of the two workers answers /metrics counts the paid call once.
        assert httpx.get(f"{url}/metrics", timeout=10).status_code == 401
        bearer = {"Authorization": f"Bearer {METRICS_TOKEN}"}
        for _ in range(4):
            scraped = httpx.get(f"{url}/metrics", headers=bearer, timeout=10)
            assert scraped.status_code == 200, scraped.text
            assert settled_calls(scraped.text, "tool:put-content") == 1
    finally:
        status = stop(process)
    assert status == 0, log.read_text()
    output = log.read_text()
    assert "System check identified no issues (2 silenced)." in output  # W008, W101: asked for
    assert "Uvicorn running on http://127.0.0.1:" in output

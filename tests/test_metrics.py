"""Metrics and traces in one process: the setting, its checks, labels, and doing nothing when off.

The end-to-end figures over every transport are in ``test_operations_e2e.py``;
several worker processes in ``test_metrics_workers.py``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from django.core import checks
from django.test import override_settings
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from aixyz_sessions import tracing
from aixyz_sessions.metrics import instruments as metric_instruments
from aixyz_sessions.metrics.checks import check_metrics_settings
from aixyz_sessions.metrics.conf import MetricsConfigError, get_metrics_config, parse
from aixyz_sessions.payments.call_report import resource_label
from aixyz_sessions.testing import PayingClient
from aixyz_sessions.tools.registry import Tool
from tests.payments_helpers import paid_views
from tests.tracing_helpers import named, recorded_spans

TOKEN = "unit-metrics-token-0123456789"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# -- the setting ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ([], "must be a dict"),
        ({"TOKEN": TOKEN, "SECRET": 1}, "keys it does not know: SECRET"),
        ({"TOKEN": "short"}, "at least 16 characters"),
        ({"TOKEN": 12345678901234567890}, "at least 16 characters"),
        ({"TOKEN": " " + TOKEN}, "without outer spaces"),
        ({"TOKEN": TOKEN + "é"}, "printable ASCII"),
        ({"TOKEN": TOKEN, "STAFF": "yes"}, "True or False"),
        ({"STAFF": False}, "lets nobody read the metrics"),
    ],
)
def test_a_setting_that_cannot_work_is_e300(value: object, words: str) -> None:
    with pytest.raises(MetricsConfigError, match=words):
        parse(value)
    with override_settings(AIXYZ_METRICS=value):
        (error,) = check_metrics_settings()
        assert error.id == "aixyz_sessions.E300" and words in error.msg
        assert error.hint and "docs/operations.md" in error.hint
        assert get_metrics_config() is None  # counts nothing rather than fail paid calls


def test_the_defaults_and_a_good_setting() -> None:
    assert parse(None) is None
    config = parse({"TOKEN": TOKEN})
    assert config is not None and config.token == TOKEN and config.staff is True
    with override_settings(AIXYZ_METRICS={"STAFF": True}):
        assert check_metrics_settings() == []
        assert get_metrics_config() is not None


def test_the_setting_without_prometheus_client_is_e301(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "prometheus_client" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with override_settings(AIXYZ_METRICS={"TOKEN": TOKEN}):
        (error,) = check_metrics_settings()
    assert error.id == "aixyz_sessions.E301" and "aixyz-sessions[prometheus]" in (error.hint or "")


def test_the_check_is_registered() -> None:
    with override_settings(AIXYZ_METRICS={"STAFF": "no"}):
        found = checks.run_checks(tags=["aixyz_sessions"])
    assert "aixyz_sessions.E300" in {message.id for message in found}


# -- labels -----------------------------------------------------------------------------------


def test_a_label_is_the_same_on_every_transport_and_bounded() -> None:
    assert resource_label("tool:echo", None, "tool 'echo'") == "tool:echo"
    assert resource_label("tool:echo", "tools/echo", "/tools/echo") == "tool:echo"
    assert resource_label("agent", None, "/agent") == "agent"
    assert resource_label(None, "reports/<int:pk>/", "/reports/7/") == "/reports/<int:pk>/"
    assert resource_label(None, "^legacy/(?P<pk>[0-9]+)/$", "/legacy/1/").startswith("/legacy/")


@pytest.mark.django_db(transaction=True)
async def test_a_view_is_counted_by_its_url_pattern_not_its_path() -> None:
    labels = {"resource": "/reports/<int:pk>/", "scheme": "exact", "network": "eip155:84532"}
    with paid_views(), override_settings(AIXYZ_METRICS={"TOKEN": TOKEN}):
        before = sample("aixyz_paid_calls_total", **labels, outcome="settled")
        payer = PayingClient()
        for pk in (7, 8, 9):
            response = await payer.get(f"/reports/{pk}/")
            assert response.status_code == 200
        after = sample("aixyz_paid_calls_total", **labels, outcome="settled")
    assert after - before == 3
    assert sample("aixyz_paid_calls_total", **{**labels, "resource": "/reports/7/"}) == 0


# -- off --------------------------------------------------------------------------------------


@pytest.fixture
def nothing_counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Fails the test if a metric is touched: records what tried."""
    touched: list[str] = []
    monkeypatch.setattr(metric_instruments, "_build", lambda: touched.append("built"))
    monkeypatch.setattr(metric_instruments, "_instruments", None)
    yield touched


@pytest.mark.django_db(transaction=True)
async def test_without_the_setting_nothing_is_built_or_counted(nothing_counted: list[str]) -> None:
    with paid_views():
        assert get_metrics_config() is None
        response = await PayingClient().get("/paid/")
        assert response.status_code == 200
    assert nothing_counted == []


async def test_without_opentelemetry_a_span_is_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "_trace", None)
    assert not tracing.tracing_available()
    with tracing.span("x402.call test", {"a": 1}) as opened:
        assert opened is None
        tracing.set_attributes(opened, {"b": 2})
        tracing.current_span_set({"c": 3})


def test_with_the_api_but_no_sdk_configured_spans_record_nothing() -> None:
    # In a fresh interpreter: this process has the tests' SDK provider installed.
    code = (
        "from aixyz_sessions import tracing\n"
        "with tracing.span('x402.call t', {'a': 1}) as s:\n"
        "    tracing.set_attributes(s, {'b': 2})\n"
        "    print(s)\n"
        "tracing.current_span_set({'c': 3})\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None"]  # not even the API's no-op span


# -- tools ------------------------------------------------------------------------------------


async def _fails(**kwargs: Any) -> Any:
    raise RuntimeError("the tool broke")


async def _answers(**kwargs: Any) -> Any:
    return {"ok": True}


async def test_a_tool_run_is_timed_and_traced_with_its_outcome() -> None:
    failing = Tool(name="unit-fails", description="fails", func=_fails)
    working = Tool(name="unit-works", description="works", func=_answers)
    with override_settings(AIXYZ_METRICS={"TOKEN": TOKEN}), recorded_spans() as exporter:
        errors = sample("aixyz_tool_seconds_count", tool="unit-fails", outcome="error")
        oks = sample("aixyz_tool_seconds_count", tool="unit-works", outcome="ok")
        with pytest.raises(RuntimeError):
            await failing.run({})
        assert await working.run({}) == {"ok": True}
        spans = exporter.get_finished_spans()
        assert sample("aixyz_tool_seconds_count", tool="unit-fails", outcome="error") == errors + 1
        assert sample("aixyz_tool_seconds_count", tool="unit-works", outcome="ok") == oks + 1
    (broken,) = named(spans, "execute_tool unit-fails")
    (fine,) = named(spans, "execute_tool unit-works")
    assert not broken.status.is_ok and broken.events[0].name == "exception"
    assert fine.status.is_unset
    assert fine.attributes is not None
    assert dict(fine.attributes) == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "unit-works",
        "gen_ai.tool.type": "function",
        "gen_ai.tool.description": "works",
    }


def test_every_metric_has_help_and_a_type() -> None:
    from prometheus_client import generate_latest

    with override_settings(AIXYZ_METRICS={"TOKEN": TOKEN}):
        assert metric_instruments.instruments() is not None
    families = {
        family.name: family
        for family in text_string_to_metric_families(generate_latest(REGISTRY).decode())
        if family.name.startswith("aixyz_") and not family.name.endswith("_created")
    }
    assert {
        "aixyz_paid_calls",
        "aixyz_revenue_atomic_units",
        "aixyz_payment_required",
        "aixyz_replays_refused",
        "aixyz_sign_ins",
        "aixyz_payment_verify_seconds",
        "aixyz_payment_settle_seconds",
        "aixyz_tool_seconds",
        "aixyz_agent_turns",
        "aixyz_agent_tokens",
    } <= set(families)
    for family in families.values():
        assert family.documentation and family.type in ("counter", "histogram")


# -- deployment mistakes ------------------------------------------------------------------------


def test_a_multiprocess_dir_that_is_not_there_is_e302(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "missing"))
    with override_settings(AIXYZ_METRICS={"TOKEN": TOKEN}):
        (error,) = check_metrics_settings()
    assert error.id == "aixyz_sessions.E302" and "missing" in error.msg
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with override_settings(AIXYZ_METRICS={"TOKEN": TOKEN}):
        assert check_metrics_settings() == []
    with override_settings(AIXYZ_METRICS=None):  # metrics off: the variable is not ours
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "missing"))
        assert check_metrics_settings() == []


def test_several_workers_without_a_multiprocess_dir_is_w300_and_said_at_start(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from aixyz_sessions.metrics.checks import warn_if_metrics_split

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    with override_settings(AIXYZ_METRICS={"TOKEN": TOKEN}):
        (warning,) = check_metrics_settings()
        assert warning.id == "aixyz_sessions.W300" and "3 workers" in warning.msg
        warn_if_metrics_split()
    assert "[W300]" in caplog.text
    monkeypatch.setenv("WEB_CONCURRENCY", "1")
    with override_settings(AIXYZ_METRICS={"TOKEN": TOKEN}):
        assert check_metrics_settings() == []


def test_metrics_counted_but_not_routed_is_w301() -> None:
    from aixyz_sessions.metrics.checks import check_metrics_routed

    with override_settings(AIXYZ_METRICS={"TOKEN": TOKEN}, ROOT_URLCONF="tests.payments_urls"):
        (warning,) = check_metrics_routed()
    assert warning.id == "aixyz_sessions.W301"
    assert "aixyz_sessions.metrics.urls" in (warning.hint or "")
    with override_settings(AIXYZ_METRICS={"TOKEN": TOKEN}, ROOT_URLCONF="tests.options_app"):
        assert check_metrics_routed() == []
    with override_settings(AIXYZ_METRICS=None, ROOT_URLCONF="tests.payments_urls"):
        assert check_metrics_routed() == []


@pytest.mark.parametrize(
    ("setting", "status", "says"),
    [
        ({"STAFF": True}, 403, "staff sign-in (no bearer token is configured)"),
        ({"TOKEN": TOKEN, "STAFF": False}, 401, "the bearer token\n"),
        ({"TOKEN": TOKEN}, 401, "the bearer token or a staff sign-in"),
    ],
)
def test_a_refusal_says_what_this_server_accepts(
    setting: dict[str, Any], status: int, says: str
) -> None:
    from django.test import RequestFactory

    from aixyz_sessions.metrics.views import metrics

    request = RequestFactory().get("/metrics", HTTP_AUTHORIZATION="Bearer " + "x" * 40)
    with override_settings(AIXYZ_METRICS=setting):
        answer = metrics(request)
    assert answer.status_code == status and says in answer.content.decode()


def test_a_tracer_provider_is_flushed_and_an_unconfigured_one_is_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry import trace

    with recorded_spans():  # the tests' SDK provider is installed
        flushed: list[int] = []
        provider = trace.get_tracer_provider()
        monkeypatch.setattr(provider, "force_flush", lambda millis=0: flushed.append(millis))
        tracing.flush()
    assert flushed == [5000]
    monkeypatch.setattr(tracing, "_trace", None)
    tracing.flush()  # without the API: nothing to do, no error

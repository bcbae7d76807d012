"""URLconf for the A2A tests: the agent (card and /agent) and the HTTP tools."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.urls import include, path

from tests.settings import LOOPBACK_HOSTS

AGENT = {
    "NAME": "Test Agent",
    "DESCRIPTION": "Invokes the example tools.",
    "VERSION": "2.0.0",
    "PRICE": "$0.001",
}

urlpatterns = [
    path("", include("aixyz_sessions.agent.urls")),
    path("tools/", include("aixyz_sessions.tools.urls")),
]


@contextmanager
def agent_server(**settings: Any) -> Iterator[str]:
    """The agent and the example tools served by uvicorn on loopback; its base URL.

    ``settings`` override the test settings (``AIXYZ_AGENT``, say).
    """
    from django.core.asgi import get_asgi_application
    from django.test import override_settings

    from aixyz_sessions.agent.server import reset_agent
    from aixyz_sessions.payments.runtime import reset_runtime
    from tests import mcp_helpers
    from tests.payments_helpers import LOCAL, MIDDLEWARE, serve

    mcp_helpers.register_examples()
    values = {
        "MIDDLEWARE": MIDDLEWARE,
        "ROOT_URLCONF": __name__,
        "AIXYZ_X402": LOCAL,
        "AIXYZ_AGENT": AGENT,
        "ALLOWED_HOSTS": LOOPBACK_HOSTS,
        **settings,
    }
    with override_settings(**values):
        reset_runtime()
        reset_agent()
        try:
            with serve(get_asgi_application()) as url:
                yield url
        finally:
            mcp_helpers.unregister_examples()
            reset_agent()
            reset_runtime()


@contextmanager
def model_agent_server(model: Any, monkeypatch: Any) -> Iterator[str]:
    """:func:`agent_server` whose text turns go to ``tests.test_agent_loop.loop_agent``.

    ``model`` is a :class:`tests.fake_openai.FakeModel`, reset and served on
    loopback for the block; the ``openai`` client finds it through the
    environment (``monkeypatch`` sets it and puts it back).
    """
    from tests.payments_helpers import serve

    model.reset()
    with serve(model.app()) as model_url:
        monkeypatch.setenv("OPENAI_BASE_URL", f"{model_url}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        with agent_server(
            AIXYZ_AGENT={**AGENT, "AGENT": "tests.test_agent_loop.loop_agent"}
        ) as url:
            yield url


async def paid_once(base: str, body: dict[str, Any]) -> tuple[Any, dict[str, str]]:
    """``body`` posted to ``/agent``, its 402 paid once by a fresh wallet with the SDK's client.

    The answer, and that payment's header (to send again: a replay).
    """
    import httpx
    from eth_account import Account
    from x402 import x402Client
    from x402.http import decode_payment_required_header, encode_payment_signature_header
    from x402.mechanisms.evm.exact import register_exact_evm_client

    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        asked = await plain.post("/agent", json=body)
        assert asked.status_code == 402, asked.text
        signer = x402Client()
        register_exact_evm_client(signer, Account.create())
        required = decode_payment_required_header(asked.headers["PAYMENT-REQUIRED"])
        payload = await signer.create_payment_payload(required)
        headers = {"PAYMENT-SIGNATURE": encode_payment_signature_header(payload)}
        return await plain.post("/agent", json=body, headers=headers), headers

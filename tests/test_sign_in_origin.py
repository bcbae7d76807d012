"""The one rule for the origin a sign-in names, whatever transport carries it.

``sign_in_origin`` decides it for HTTP, WebSocket and MCP alike:
``AIXYZ_X402["ORIGIN"]``, else the request's own origin only when
``ALLOWED_HOSTS`` names its host. A host the client chose (``evil.example``)
or a bare ``"*"`` proves nothing. The WebSocket attack itself, against the
real demo, is in ``test_paid_work_e2e``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings
from eth_account import Account
from x402.extensions.sign_in_with_x import create_siwx_payload, encode_siwx_header

from aixyz_sessions import get_session
from aixyz_sessions.payments.checks import check_x402_settings
from aixyz_sessions.payments.failures import INVALID_SIGN_IN, SERVER_MISCONFIGURED, PaymentFailure
from aixyz_sessions.payments.paid_call import sign_in_origin
from aixyz_sessions.payments.runtime import get_runtime, reset_runtime
from aixyz_sessions.payments.sign_in import declaration
from aixyz_sessions.tools import ToolPaymentError, call_tool, registry, tool
from tests.payments_helpers import LOCAL, NETWORK

pytestmark = pytest.mark.django_db

WHO = "origin_whoami"


@pytest.fixture(autouse=True)
def _local() -> Iterator[None]:
    with override_settings(AIXYZ_X402=LOCAL, ALLOWED_HOSTS=["api.example.com", ".example.org"]):
        reset_runtime()
        yield
    reset_runtime()


def _origin(origin: str | None, **settings: Any) -> str:
    with override_settings(**settings):
        reset_runtime()
        return sign_in_origin(get_runtime(), origin)


def _refused(origin: str | None, **settings: Any) -> PaymentFailure:
    with pytest.raises(PaymentFailure) as refused:
        _origin(origin, **settings)
    return refused.value


def test_a_named_host_or_subdomain_is_owned() -> None:
    assert _origin("https://api.example.com") == "https://api.example.com"
    assert _origin("https://eu.example.org:8443") == "https://eu.example.org:8443"


def test_a_host_the_client_chose_is_not() -> None:
    refused = _refused("http://evil.example")
    assert refused.code == INVALID_SIGN_IN and "ALLOWED_HOSTS" in refused.message


def test_the_configured_origin_wins_over_the_request() -> None:
    configured = {**LOCAL, "ORIGIN": "https://public.example.net"}
    assert _origin("http://evil.example", AIXYZ_X402=configured) == "https://public.example.net"


def test_any_host_allowed_needs_the_origin_configured() -> None:
    refused = _refused("http://evil.example", ALLOWED_HOSTS=["*"])
    assert refused.code == SERVER_MISCONFIGURED and "ORIGIN" in refused.message
    # A host named beside "*" is still owned.
    named = _origin("http://api.example.com", ALLOWED_HOSTS=["*", "api.example.com"])
    assert named == "http://api.example.com"


def test_no_origin_known_names_the_setting() -> None:
    refused = _refused(None)
    assert refused.code == INVALID_SIGN_IN and "AIXYZ_X402['ORIGIN']" in refused.message


@pytest.mark.parametrize(
    ("scheme", "host", "port", "origin"),
    [
        ("http", "127.0.0.1:8000", 8000, "http://127.0.0.1:8000"),
        ("http", "testserver", "80", "http://testserver"),
        ("https", "API.example.com", 443, "https://api.example.com"),
        ("http", "[::1]:8000", 8000, "http://[::1]:8000"),
        ("http", "localhost:8000", None, "http://localhost:8000"),  # a Unix socket: no port
        ("http", "127.0.0.1:1", 8000, None),  # another port on an allowed name
        ("http", "localhost", 8000, None),  # port 80: another service (or a proxy)
        ("https", "api.example.com", 8000, None),
        ("http", "bad host", 80, None),
    ],
)
def test_the_origin_a_request_reached_names_the_port_the_server_listens_on(
    scheme: str, host: str, port: object, origin: str | None
) -> None:
    from aixyz_sessions.hosts import request_origin

    assert request_origin(scheme, host, port) == origin


async def _who() -> dict[str, Any]:
    session = get_session()
    assert session is not None
    return {"payer": session.payer}


async def test_a_message_transport_passing_a_foreign_host_signs_nobody_in() -> None:
    """What the WebSocket consumer hands over (its Host) goes through the same rule."""
    tool(_who, name=WHO, sign_in="required")
    try:
        item = registry.get(WHO)
        assert item is not None
        account = Account.create()
        info = declaration(
            f"/tools/{WHO}", origin="http://evil.example", network=NETWORK, max_age=60
        )
        payload = await create_siwx_payload(
            {**info["info"], "chainId": NETWORK, "type": "eip191"},
            account,
            f"http://evil.example/tools/{WHO}",
        )
        with pytest.raises(ToolPaymentError) as refused:
            await call_tool(
                item, {}, sign_in=encode_siwx_header(payload), origin="http://evil.example"
            )
        assert refused.value.code == INVALID_SIGN_IN
        assert "evil.example" in refused.value.message
    finally:
        registry.unregister(WHO)


def test_w105_when_sign_in_cannot_trust_any_host() -> None:
    tool(_who, name=WHO, sign_in="required")  # some route takes a sign-in
    try:
        with override_settings(ALLOWED_HOSTS=["*"]):
            warned = [m for m in check_x402_settings() if m.id == "aixyz_sessions.W105"]
            assert warned and "ORIGIN" in (warned[0].hint or "")
        with override_settings(ALLOWED_HOSTS=["*"], AIXYZ_X402={**LOCAL, "ORIGIN": "https://a.b"}):
            assert not [m for m in check_x402_settings() if m.id == "aixyz_sessions.W105"]
        with override_settings(ALLOWED_HOSTS=["api.example.com"]):
            assert not [m for m in check_x402_settings() if m.id == "aixyz_sessions.W105"]
    finally:
        registry.unregister(WHO)


async def test_a_402_says_when_sign_in_is_not_offered() -> None:
    """ALLOWED_HOSTS = ["*"], no ORIGIN: the payment is offered; the 402 says sign-in is not."""
    from aixyz_sessions.tools.calls import payment_required_for

    tool(_who, name=WHO, price="$0.01", sign_in="after_payment")
    try:
        item = registry.get(WHO)
        assert item is not None
        with override_settings(ALLOWED_HOSTS=["*"]):
            reset_runtime()
            required = await payment_required_for(item, origin="http://anything.example")
        assert required.accepts and "sign-in not offered" in (required.error or "")
        assert "sign-in-with-x" not in (required.extensions or {})
    finally:
        registry.unregister(WHO)

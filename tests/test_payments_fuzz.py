"""Whatever arrives in the payment header, the answer is a 402, never a 500."""

from __future__ import annotations

import base64
import json

import pytest
from django.test import AsyncClient, override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.payments_helpers import LOCAL, MIDDLEWARE

pytestmark = pytest.mark.django_db

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
payload_like = st.fixed_dictionaries(
    {
        "x402Version": st.sampled_from([1, 2, 3, "2"]),
        "payload": json_values,
        "accepted": json_values,
    },
    optional={"resource": json_values},
)
headers = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=60),
    st.binary(max_size=60).map(lambda b: base64.b64encode(b).decode()),
    json_values.map(lambda v: base64.b64encode(json.dumps(v).encode()).decode()),
    payload_like.map(lambda v: base64.b64encode(json.dumps(v).encode()).decode()),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(header=headers, name=st.sampled_from(["PAYMENT-SIGNATURE", "X-PAYMENT"]))
def test_garbage_payment_header_is_402(header: str, name: str) -> None:
    with override_settings(
        MIDDLEWARE=MIDDLEWARE, ROOT_URLCONF="tests.payments_urls", AIXYZ_X402=LOCAL
    ):
        from asgiref.sync import async_to_sync

        response = async_to_sync(AsyncClient().get)("/paid/", headers={name: header})
    assert response.status_code == 402, (header, response.content)

"""``PayingClient``: a Django test client that pays x402 402s like a real agent.

On a 402 it decodes ``PAYMENT-REQUIRED``, signs an exact-EVM authorization
(or an ``upto`` Permit2 one, for a metered price) for the first option it
offers, with the SDK's ``x402Client`` and its own key, and retries with the payment
header. ``pay=False`` on a request sends no payment::

    client = PayingClient()                  # random key; client.address
    response = await client.get("/tool/")    # 200, paid
    response = await client.get("/tool/", pay=False)   # 402
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponseBase
from django.test import AsyncClient, Client
from eth_account import Account
from eth_account.signers.local import LocalAccount
from x402 import x402Client, x402ClientSync
from x402.http import x402HTTPClient, x402HTTPClientSync
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.mechanisms.evm.upto import UptoEvmClientScheme

__all__ = ["PayingClient", "SyncPayingClient", "sign_in_header"]


def _account(account: LocalAccount | str | bytes | None) -> LocalAccount:
    if account is None:
        created: LocalAccount = Account.create()
        return created
    if isinstance(account, LocalAccount):
        return account
    loaded: LocalAccount = Account.from_key(account)
    return loaded


def _headers(response: HttpResponseBase) -> dict[str, str]:
    return dict(response.headers.items())


def _body(response: HttpResponseBase) -> bytes | None:
    return None if getattr(response, "streaming", False) else response.content  # type: ignore[attr-defined]


def _unpaid_402(response: HttpResponseBase, pay: bool) -> bool:
    """Whether ``response`` asks for an x402 payment that the caller wants to make."""
    return pay and response.status_code == 402 and "PAYMENT-REQUIRED" in response


async def sign_in_header(
    account: LocalAccount, payment_required: Any, url: str, *, chain: str | None = None
) -> str:
    """A ``SIGN-IN-WITH-X`` value answering a 402's sign-in offer, signed by ``account``.

    ``payment_required`` is the 402's ``PAYMENT-REQUIRED`` header value (or
    the decoded ``PaymentRequired``, or its JSON object, as WebSocket and MCP
    errors carry it); ``url`` the URL that answered 402. Built with the SDK's
    client helpers (``create_siwx_payload``, ``encode_siwx_header``), which
    also check that the offer is bound to ``url``'s origin.
    ``ValueError`` when the 402 offers no sign-in.
    """
    from x402.extensions.sign_in_with_x import (
        SIGN_IN_WITH_X,
        create_siwx_payload,
        encode_siwx_header,
    )
    from x402.http import decode_payment_required_header

    if isinstance(payment_required, str):
        payment_required = decode_payment_required_header(payment_required)
    extensions = (
        payment_required.get("extensions")
        if isinstance(payment_required, dict)
        else payment_required.extensions
    )
    offer = (extensions or {}).get(SIGN_IN_WITH_X)
    if not offer:
        raise ValueError("this 402 offers no sign-in (no sign-in-with-x extension)")
    chains = offer.get("supportedChains") or []
    chosen = next((c for c in chains if chain is None or c.get("chainId") == chain), None)
    if chosen is None:
        raise ValueError(f"the sign-in offer names no usable chain: {chains!r}")
    info = {**offer["info"], "chainId": chosen["chainId"], "type": chosen["type"]}
    payload = await create_siwx_payload(info, account, url)
    return str(encode_siwx_header(payload))


class _Payer:
    """The key both clients pay with."""

    account: LocalAccount

    @property
    def address(self) -> str:
        """The payer address (EIP-55 checksummed)."""
        return str(self.account.address)


class PayingClient(_Payer, AsyncClient):
    """An ``AsyncClient`` that answers 402s with a signed x402 payment."""

    def __init__(
        self, *args: Any, account: LocalAccount | str | bytes | None = None, **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        self.account = _account(account)
        client = x402Client()
        register_exact_evm_client(client, self.account)  # type: ignore[arg-type]
        client.register("eip155:*", UptoEvmClientScheme(EthAccountSigner(self.account)))
        #: The SDK's ``x402Client`` signing with this key (``create_payment_payload``).
        self.signer = client
        self.x402 = x402HTTPClient(client)

    async def payment_headers(self, response: HttpResponseBase) -> dict[str, str]:
        """Sign a payment for a 402 ``response``; the headers to retry with."""
        headers, _ = await self.x402.handle_402_response(
            _headers(response), _body(response), "http://testserver/"
        )
        return headers

    async def sign_in(
        self, method: str, path: str, data: Any = None, **kwargs: Any
    ) -> HttpResponseBase:
        """Come back as a returning payer: ask, sign the 402's sign-in offer, send it.

        ``data`` is the body, as for :meth:`post`: a dict or list is sent as
        JSON, anything else as given (with ``content_type``). No payment is
        made: a refused sign-in answers its 402 (with the reason).
        """
        if isinstance(data, dict | list):
            data = json.dumps(data)
            kwargs.setdefault("content_type", "application/json")
        if data is not None:
            kwargs["data"] = data
        send = super().generic
        asked: HttpResponseBase = await send(method, path, **kwargs)
        if asked.status_code != 402 or "PAYMENT-REQUIRED" not in asked:
            return asked
        header = await sign_in_header(
            self.account, asked["PAYMENT-REQUIRED"], f"http://testserver{path}"
        )
        headers = {**kwargs.pop("headers", None or {}), "SIGN-IN-WITH-X": header}
        signed: HttpResponseBase = await send(method, path, headers=headers, **kwargs)
        return signed

    def generic(  # type: ignore[override]
        self,
        method: str,
        path: str,
        data: Any = "",
        content_type: str | None = "application/octet-stream",
        secure: bool = False,
        *,
        headers: dict[str, str] | None = None,
        query_params: Any = None,
        pay: bool = True,
        **extra: Any,
    ) -> Any:
        """Send the request; on a 402 (unless ``pay=False``) pay and send it again."""
        return self._paying(
            method, path, data, content_type, secure, headers, query_params, pay, extra
        )

    async def _paying(
        self,
        method: str,
        path: str,
        data: Any,
        content_type: str | None,
        secure: bool,
        headers: dict[str, str] | None,
        query_params: Any,
        pay: bool,
        extra: dict[str, Any],
    ) -> HttpResponseBase:
        send = super().generic
        response: HttpResponseBase = await send(
            method,
            path,
            data,
            content_type,
            secure,
            headers=headers,
            query_params=query_params,
            **extra,
        )
        if not _unpaid_402(response, pay):
            return response
        payment = await self.payment_headers(response)
        paid: HttpResponseBase = await send(
            method,
            path,
            data,
            content_type,
            secure,
            headers={**(headers or {}), **payment},
            query_params=query_params,
            **extra,
        )
        return paid


class SyncPayingClient(_Payer, Client):
    """The sync twin of :class:`PayingClient`, over Django's ``Client``."""

    def __init__(
        self, *args: Any, account: LocalAccount | str | bytes | None = None, **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        self.account = _account(account)
        client = x402ClientSync()
        register_exact_evm_client(client, self.account)  # type: ignore[arg-type]
        client.register("eip155:*", UptoEvmClientScheme(EthAccountSigner(self.account)))
        #: The SDK's ``x402ClientSync`` signing with this key.
        self.signer = client
        self.x402 = x402HTTPClientSync(client)

    def payment_headers(self, response: HttpResponseBase) -> dict[str, str]:
        """Sign a payment for a 402 ``response``; the headers to retry with."""
        headers, _ = self.x402.handle_402_response(
            _headers(response), _body(response), "http://testserver/"
        )
        return headers

    def generic(  # type: ignore[override]
        self,
        method: str,
        path: str,
        data: Any = "",
        content_type: str | None = "application/octet-stream",
        secure: bool = False,
        *,
        headers: dict[str, str] | None = None,
        query_params: Any = None,
        pay: bool = True,
        **extra: Any,
    ) -> Any:
        """Send the request; on a 402 (unless ``pay=False``) pay and send it again."""
        send = super().generic
        response = send(
            method,
            path,
            data,
            content_type,
            secure,
            headers=headers,
            query_params=query_params,
            **extra,
        )
        if not _unpaid_402(response, pay):
            return response
        payment = self.payment_headers(response)
        return send(
            method,
            path,
            data,
            content_type,
            secure,
            headers={**(headers or {}), **payment},
            query_params=query_params,
            **extra,
        )

"""Sign in with the wallet that paid: one set of rules for every transport.

A returning payer proves who they are with the x402 ``sign-in-with-x``
extension (CAIP-122 / EIP-4361 message signed by the wallet) instead of
paying again. The SDK's pieces do the protocol: :func:`declaration` builds
the extension entry a 402 carries (fresh nonce, domain, URI, issued-at, the
chain), and :func:`verify_sign_in` runs the SDK's parser, message validator
and signature verifier, then the checks the SDK leaves to its user:

* the message names this resource: its ``uri`` path is the path of the URL
  the 402 named (a sign-in for one tool or view does not open another);
* the chain is this resource's network, the signature an EVM (EIP-191) one;
* the nonce is accepted once: claimed in the replay guard's backend (Redis,
  the database, or process memory with the in-memory store) until the message
  is too old to pass anyway, so every worker refuses a reuse;
* the policy holds: ``"after_payment"`` needs a payment by this signer for
  this resource within ``SIGN_IN_WINDOW``; ``"after_any_payment"`` one for
  any paid resource of this backend; ``"required"`` needs none (auth only).

The signer becomes the payer bound with :func:`~aixyz_sessions.payer_context`:
the same session as when paying. Payment records ("this payer paid for this
resource at T") are written at settlement by the paid-call core, only for what
some declared policy can read (:func:`records_for`).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from ..bounded_json import check_depth
from ..replay import PayerRecords, PaymentClaims, Record
from .conf import X402ConfigError
from .headers import SIGN_IN_WITH_X

__all__ = [
    "SIGN_IN_HEADER",
    "SignInPolicy",
    "SignInRefused",
    "check_sign_in",
    "declaration",
    "offer",
    "payment_records",
    "records_for",
    "sign_in_declared",
    "target_of",
    "verify_sign_in",
]

#: The HTTP header (and the extension key) of a sign-in.
SIGN_IN_HEADER = SIGN_IN_WITH_X
SignInPolicy = Literal["after_payment", "after_any_payment", "required"]
POLICIES: tuple[str, ...] = get_args(SignInPolicy)
#: Longest sign-in header read, in characters (a real one is under 2 KB).
MAX_SIGN_IN_CHARS = 8 * 1024
#: Record name for "paid for anything here" (read by ``after_any_payment``).
ANY_RESOURCE = "*"
_NONCE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")

_lock = threading.Lock()
_any_payment_read = False  # set once a route declares "after_any_payment"
_declared = False  # set once a route declares any sign-in


class SignInRefused(Exception):
    """A sign-in that does not prove a payer for this resource; the reason is for the client."""


def check_sign_in(value: object, *, what: str) -> SignInPolicy | None:
    """``value`` if it is a sign-in policy (or ``None``); ``X402ConfigError`` otherwise.

    Declaring ``"after_any_payment"`` makes every settlement of this process
    record its payer (what that policy reads).
    """
    global _any_payment_read, _declared
    if value is None:
        return None
    if value not in POLICIES:
        raise X402ConfigError(
            f"{what}: sign_in must be one of {', '.join(map(repr, POLICIES))} or None, "
            f"got {value!r}",
            id="aixyz_sessions.E108",
            hint='"after_payment": a payer of this resource signs in instead of paying '
            'again; "after_any_payment": a payer of any paid resource here; "required": '
            "a free resource that needs a proven payer.",
        )
    with _lock:
        _declared = True
        if value == "after_any_payment":
            _any_payment_read = True
    return value  # type: ignore[return-value]


def sign_in_declared() -> bool:
    """Whether some view or tool of this process takes a sign-in."""
    return _declared


def _record_name(resource: str) -> str:
    """The guard's name for "paid for ``resource``" (hashed: paths may be long)."""
    if resource == ANY_RESOURCE:
        return "paid:*"
    return "paid:" + hashlib.sha256(resource.encode()).hexdigest()[:40]


def records_for(policy: SignInPolicy | None, resource: str) -> list[str]:
    """What a settled payment for ``resource`` must record so that sign-in can read it."""
    names = [resource] if policy == "after_payment" else []
    if _any_payment_read:
        names.append(ANY_RESOURCE)
    return names


def payment_records(payer: str, resources: list[str], window: float) -> list[Record]:
    """The guard's records saying that ``payer`` paid for each of ``resources`` now.

    Each lives ``window`` seconds; the paid-call flow hands them to the
    session store's commit (one round trip with the session writes where the
    store can), or writes them after it.
    """
    now = time.time()
    return [
        Record(payer, _record_name(resource), f"{now:.3f}", now + window) for resource in resources
    ]


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def target_of(resource: str | None, request_path: str) -> tuple[str, str]:
    """``(resource, path)``: what a payment is recorded for, what a sign-in must name.

    A tool (``resource="tool:<name>"``) is one resource on every transport,
    named ``/tools/<name>`` in sign-in messages; a view is its request path.
    """
    if resource and resource.startswith("tool:"):
        return resource, "/tools/" + resource.removeprefix("tool:")
    return resource or request_path, request_path


def declaration(
    path: str,
    *,
    origin: str,
    network: str,
    max_age: float,
    statement: str | None = None,
) -> dict[str, Any]:
    """The ``sign-in-with-x`` entry of a 402's ``extensions`` for ``origin`` + ``path``.

    What the SDK's server extension advertises (``info`` with a fresh nonce,
    the origin's host as ``domain``, the resource URI, issued-at and expiry;
    ``supportedChains``; the SDK's JSON schema), so that the SDK's client
    helpers (``create_siwx_payload``) answer it as is.
    """
    from x402.extensions.sign_in_with_x import build_siwx_schema, get_signature_type

    uri = origin + path
    now = datetime.now(UTC)
    info: dict[str, Any] = {
        "domain": urlsplit(origin).netloc,
        "uri": uri,
        "version": "1",
        "nonce": secrets.token_hex(16),
        "issuedAt": _iso(now),
        "expirationTime": _iso(now + timedelta(seconds=max_age)),
        "resources": [uri],
    }
    if statement:
        info["statement"] = statement
    return {
        "info": info,
        "supportedChains": [{"chainId": network, "type": get_signature_type(network)}],
        "schema": build_siwx_schema(),
    }


def offer(
    required: Any,
    *,
    url: str,
    path: str,
    origin: str,
    network: str,
    max_age: float,
    description: str | None = None,
) -> Any:
    """``required`` (the SDK's ``PaymentRequired``) with the sign-in extension added.

    ``required=None`` gives the auth-only form: ``accepts`` empty, only the
    extension (a resource that takes no payment, just a proven payer).
    """
    from x402.extensions.sign_in_with_x import SIGN_IN_WITH_X
    from x402.schemas import PaymentRequired, ResourceInfo

    entry = declaration(path, origin=origin, network=network, max_age=max_age)
    if required is None:
        return PaymentRequired(
            x402_version=2,
            error="Sign-in required",
            resource=ResourceInfo(url=url, description=description or ""),
            accepts=[],
            extensions={SIGN_IN_WITH_X: entry},
        )
    extensions = {**(required.extensions or {}), SIGN_IN_WITH_X: entry}
    return required.model_copy(update={"extensions": extensions})


async def verify_sign_in(
    header: object,
    *,
    origin: str,
    path: str,
    network: str,
    policy: SignInPolicy,
    resource: str,
    claims: PaymentClaims,
    records: PayerRecords,
    max_age: float,
) -> str:
    """The payer a sign-in proves for ``resource`` (EIP-55), or :class:`SignInRefused`.

    ``header`` is the base64 ``SIGN-IN-WITH-X`` value (a message transport may
    pass the decoded payload object). ``path`` is the URL path the message must
    name, ``origin`` the ``scheme://host`` it must be bound to; the payment
    record a policy needs is read from ``records``, and the sign-in's nonce
    is claimed in ``claims`` (a signed message is used once). Store failures
    propagate (``SessionStoreError``).
    """
    from x402.extensions.sign_in_with_x import (
        SIWxPayload,
        parse_siwx_header,
        validate_siwx_message,
        verify_siwx_signature,
    )
    from x402.extensions.sign_in_with_x.types import SIWxValidationOptions

    from .authorization import checksummed

    payload = _parse(header, parse_siwx_header, SIWxPayload)
    if not isinstance(payload.nonce, str) or not 8 <= len(payload.nonce) <= 128:
        raise SignInRefused("sign-in nonce must be 8 to 128 letters and digits")
    if not set(payload.nonce) <= _NONCE_CHARS:
        raise SignInRefused("sign-in nonce must be 8 to 128 letters and digits")
    validation = await validate_siwx_message(
        payload, origin, SIWxValidationOptions.model_validate({"maxAge": int(max_age * 1000)})
    )
    if not validation.is_valid:
        raise SignInRefused(f"sign-in refused: {validation.invalid_message}")
    if urlsplit(payload.uri).path != path:
        raise SignInRefused(
            f"sign-in is for {urlsplit(payload.uri).path!r}, not this resource ({path!r})"
        )
    if payload.chain_id != network or payload.type != "eip191":
        raise SignInRefused(
            f"sign-in must be an EIP-191 signature on {network}, got {payload.type} on "
            f"{payload.chain_id}"
        )
    verified = await verify_siwx_signature(payload)
    if not verified.is_valid or not verified.payer:
        raise SignInRefused(f"sign-in refused: {verified.invalid_message or 'bad signature'}")
    payer = checksummed(verified.payer)
    if policy != "required":
        wanted = resource if policy == "after_payment" else ANY_RESOURCE
        if await records.recall(payer, _record_name(wanted)) is None:
            what = "this resource" if policy == "after_payment" else "anything here"
            raise SignInRefused(
                f"{payer} has not paid for {what} recently: pay, then sign in to come back"
            )
    # Last: a refused sign-in does not spend its nonce. The message is dead
    # max_age after issuedAt (validate refuses it), so the claim lasts that long.
    issued = datetime.fromisoformat(payload.issued_at.replace("Z", "+00:00"))
    if issued.tzinfo is None:
        issued = issued.replace(tzinfo=UTC)
    dead_at = int(issued.timestamp() + max_age) + 1
    nonce_name = "siwx:" + hashlib.sha256(payload.nonce.encode()).hexdigest()[:40]
    if not await claims.claim(payer, nonce_name, dead_at):
        raise SignInRefused("sign-in already used: sign a new one (fresh nonce)")
    return payer


def _parse(header: object, parse: Any, model: Any) -> Any:
    """The SDK's parse of a header, bounded first; a payload object is validated as such."""
    if isinstance(header, dict):
        import json

        try:
            text = json.dumps(header)
        except (TypeError, ValueError):
            raise SignInRefused("sign-in must be a JSON object") from None
        if len(text) > MAX_SIGN_IN_CHARS:
            raise SignInRefused(f"sign-in is longer than {MAX_SIGN_IN_CHARS} characters")
        try:
            check_depth(text)
            return model.model_validate(header)
        except ValueError as exc:
            raise SignInRefused(f"sign-in is not a sign-in-with-x payload: {exc}") from None
    if not isinstance(header, str):
        raise SignInRefused("sign-in must be the base64 SIGN-IN-WITH-X value or its payload")
    if len(header) > MAX_SIGN_IN_CHARS:
        raise SignInRefused(f"sign-in is longer than {MAX_SIGN_IN_CHARS} characters")
    try:
        import base64

        check_depth(base64.b64decode(header + "=" * (-len(header) % 4), validate=False))
        return parse(header)
    except ValueError as exc:
        raise SignInRefused(str(exc) or "sign-in header is not valid") from None

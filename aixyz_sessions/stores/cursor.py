"""The opaque list cursor: an encrypted, authenticated "continue after this key".

A cursor names the last key of a page. It is encrypted so it reveals neither
payer nor key, and authenticated together with the payer so it cannot be
forged or replayed for another payer: a cursor made for payer A is simply
undecodable for payer B. Standard library only (keyed BLAKE2b as MAC and as
a keystream generator, synthetic-IV style, so equal keys give equal cursors).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from ..exceptions import SessionArgumentError

_VERSION = b"\x01"
_TAG_BYTES = 16
_BLOCK = 64
_INVALID = "cursor is not valid: pass the cursor of a previous page"


class CursorCodec:
    """Encodes and decodes list cursors with one secret."""

    __slots__ = ("_enc_key", "_mac_key")

    def __init__(self, secret: bytes | str | None = None) -> None:
        if secret is None:
            secret = secrets.token_bytes(32)
        if isinstance(secret, str):
            secret = secret.encode()
        root = hashlib.blake2b(secret, digest_size=64, person=b"aixyz-cursor").digest()
        self._mac_key = root[:32]
        self._enc_key = root[32:]

    def _tag(self, payer: str, raw_key: bytes) -> bytes:
        mac = hashlib.blake2b(key=self._mac_key, digest_size=_TAG_BYTES)
        mac.update(payer.encode("utf-8", "surrogatepass"))
        mac.update(b"\x00")
        mac.update(raw_key)
        return mac.digest()

    def _keystream(self, tag: bytes, length: int) -> bytes:
        blocks = []
        for counter in range((length + _BLOCK - 1) // _BLOCK):
            block = hashlib.blake2b(
                tag + counter.to_bytes(4, "big"), key=self._enc_key, digest_size=_BLOCK
            )
            blocks.append(block.digest())
        return b"".join(blocks)[:length]

    def encode(self, payer: str, key: str) -> str:
        """Return the cursor meaning "the page after ``key``" for ``payer``."""
        raw = key.encode("utf-8")
        tag = self._tag(payer, raw)
        stream = self._keystream(tag, len(raw))
        body = bytes(a ^ b for a, b in zip(raw, stream, strict=True))
        return base64.urlsafe_b64encode(_VERSION + tag + body).rstrip(b"=").decode("ascii")

    def decode(self, payer: str, cursor: str) -> str:
        """Return the key a cursor continues after; :class:`SessionArgumentError` if not ours."""
        if not isinstance(cursor, str):
            raise TypeError(f"cursor must be a str or None, not {type(cursor).__name__}")
        try:
            blob = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError):
            raise SessionArgumentError(_INVALID) from None
        if len(blob) <= 1 + _TAG_BYTES or blob[:1] != _VERSION:
            raise SessionArgumentError(_INVALID)
        tag, body = blob[1 : 1 + _TAG_BYTES], blob[1 + _TAG_BYTES :]
        stream = self._keystream(tag, len(body))
        raw = bytes(a ^ b for a, b in zip(body, stream, strict=True))
        if not hmac.compare_digest(tag, self._tag(payer, raw)):
            raise SessionArgumentError(_INVALID)
        return raw.decode("utf-8")

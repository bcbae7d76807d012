"""Argument checks every store shares, so all stores refuse the same inputs alike.

Wrong types raise ``TypeError``; empty, oversized or negative values raise
:class:`SessionArgumentError` (a ``ValueError``) whose message names the limit.
They run before a store touches its backend, so a refused call never writes
anything. The tool transports answer a ``SessionArgumentError`` escaping a
tool as the caller's mistake (400 / ``invalid_arguments``), not a server fault.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..exceptions import SessionArgumentError

MAX_KEY_BYTES = 512
MAX_PAYER_CHARS = 256
DEFAULT_MAX_VALUE_BYTES = 1024 * 1024
DEFAULT_TTL_MS = 3_600_000
DEFAULT_MAX_BATCH = 1000
#: Largest page size a store is asked for: bigger limits are served as this one
#: (2**31 - 1 fits every backend's integers, Lua's doubles included).
MAX_LIMIT = 2**31 - 1


def _type_name(value: object) -> str:
    return type(value).__name__


def check_payer(payer: object) -> str:
    if not isinstance(payer, str):
        raise TypeError(f"payer must be a str, not {_type_name(payer)}")
    if not payer or len(payer) > MAX_PAYER_CHARS:
        raise SessionArgumentError(f"payer must be 1..{MAX_PAYER_CHARS} characters")
    if "\x00" in payer:
        raise SessionArgumentError("payer must not contain NUL (\\x00) characters")
    if not payer.isascii():
        _utf8_len(payer, "payer")
    return payer


def check_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"key must be a str, not {_type_name(key)}")
    if not key:
        raise SessionArgumentError(f"key must not be empty (1..{MAX_KEY_BYTES} UTF-8 bytes)")
    # Cheap bound first: a str of n code points is at least n UTF-8 bytes.
    if len(key) > MAX_KEY_BYTES or (not key.isascii() and _utf8_len(key, "key") > MAX_KEY_BYTES):
        raise SessionArgumentError(f"key is longer than {MAX_KEY_BYTES} UTF-8 bytes")
    if "\x00" in key:
        raise SessionArgumentError("key must not contain NUL (\\x00) characters")
    return key


def check_value(value: object, max_bytes: int) -> str:
    if not isinstance(value, str):
        raise TypeError(f"value must be a str, not {_type_name(value)}")
    if len(value) > max_bytes or (not value.isascii() and _utf8_len(value, "value") > max_bytes):
        raise SessionArgumentError(f"value is larger than the limit of {max_bytes} UTF-8 bytes")
    if "\x00" in value:
        raise SessionArgumentError("value must not contain NUL (\\x00) characters")
    return value


def _utf8_len(text: str, what: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise SessionArgumentError(f"{what} is not encodable as UTF-8 (lone surrogate)") from None


def check_ttl(ttl_ms: object) -> int | None:
    if ttl_ms is None:
        return None
    if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int):
        raise TypeError(f"ttl_ms must be an int or None, not {_type_name(ttl_ms)}")
    if ttl_ms < 0:
        raise SessionArgumentError("ttl_ms must be >= 0 (0 means never expires)")
    return ttl_ms


def check_limit(limit: object) -> int | None:
    """Return ``None`` for "no limit" (None or 0), else the positive limit."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"limit must be an int or None, not {_type_name(limit)}")
    if limit < 0:
        raise SessionArgumentError("limit must be >= 0 (0 or None means no limit)")
    # Any positive int is served: larger than any store can hold, it is clamped
    # to what every backend's integer type takes (SQLite and PostgreSQL: int64).
    return min(limit, MAX_LIMIT) or None


def check_prefix(prefix: object) -> str | None:
    if prefix is None or prefix == "":
        return None
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str or None, not {_type_name(prefix)}")
    if len(prefix) > MAX_KEY_BYTES or _utf8_len(prefix, "prefix") > MAX_KEY_BYTES:
        raise SessionArgumentError(f"prefix is longer than {MAX_KEY_BYTES} UTF-8 bytes")
    return prefix


def check_cursor(cursor: object) -> str | None:
    if cursor is None:
        return None
    if not isinstance(cursor, str):
        raise TypeError(f"cursor must be a str or None, not {_type_name(cursor)}")
    if not cursor:
        raise SessionArgumentError("cursor is not valid: pass the cursor of a previous page")
    return cursor


def check_bool(flag: object, name: str) -> bool:
    if not isinstance(flag, bool):
        raise TypeError(f"{name} must be a bool, not {_type_name(flag)}")
    return flag


def check_keys(keys: object, max_batch: int) -> list[str]:
    if isinstance(keys, str | bytes) or not isinstance(keys, Iterable):
        raise TypeError(f"keys must be an iterable of str, not {_type_name(keys)}")
    checked = [check_key(k) for k in keys]
    if len(checked) > max_batch:
        raise SessionArgumentError(f"too many keys in one batch: {len(checked)} > {max_batch}")
    return checked


def check_entries(entries: object, max_value_bytes: int, max_batch: int) -> dict[str, str]:
    if not isinstance(entries, Mapping):
        raise TypeError(f"entries must be a mapping of str to str, not {_type_name(entries)}")
    if len(entries) > max_batch:
        raise SessionArgumentError(f"too many entries in one batch: {len(entries)} > {max_batch}")
    return {check_key(k): check_value(v, max_value_bytes) for k, v in entries.items()}


def check_writes(writes: object, max_value_bytes: int) -> dict[str, tuple[str, int | None] | None]:
    """A commit's writes: key -> ``(value, ttl_ms)`` or ``None`` (a delete), each checked."""
    if not isinstance(writes, Mapping):
        raise TypeError(f"writes must be a mapping of str, not {_type_name(writes)}")
    checked: dict[str, tuple[str, int | None] | None] = {}
    for key, write in writes.items():
        if write is None:
            checked[check_key(key)] = None
            continue
        if not isinstance(write, tuple) or len(write) != 2:
            raise TypeError(f"a write must be (value, ttl_ms) or None, not {_type_name(write)}")
        checked[check_key(key)] = (check_value(write[0], max_value_bytes), check_ttl(write[1]))
    return checked

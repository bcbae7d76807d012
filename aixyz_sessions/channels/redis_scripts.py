"""The Lua scripts behind ``RedisChannelStorage``: version-checked writes.

One hash per channel, ``<prefix>{<channel id>}``, with two fields: ``data``
(the channel's JSON) and ``ver`` (an opaque version token, a fresh random
string on every write). Both scripts touch only ``KEYS[1]``, so they run in
that key's Redis Cluster slot.

A version token is random rather than a counter so a channel deleted and
created again never reuses a version a slow writer may still hold (no ABA).
"""

from __future__ import annotations

__all__ = ["DELETE_IF_VERSION", "WRITE_IF_VERSION"]

#: KEYS[1] the channel key; ARGV[1] the version read ("" = absent),
#: ARGV[2] the new JSON, ARGV[3] the new version. 1 written, 0 conflict.
WRITE_IF_VERSION = """
local current = redis.call('HGET', KEYS[1], 'ver') or ''
if current ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'data', ARGV[2], 'ver', ARGV[3])
return 1
"""

#: KEYS[1] the channel key; ARGV[1] the version read. 1 deleted, 0 conflict.
DELETE_IF_VERSION = """
local current = redis.call('HGET', KEYS[1], 'ver') or ''
if current ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""

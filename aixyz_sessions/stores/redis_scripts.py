"""The Lua scripts behind ``CacheSessionStore``: one atomic round trip per operation.

Why scripts: a session operation touches two things, the entry's value key
and the payer's key index (a sorted set), and ``get`` must also refresh the
sliding expiry with the entry's own TTL. Doing that from the client would
take several round trips and could leave the index and the values out of
step when a connection drops half way. A script runs all of it atomically on
the server in one ``EVALSHA`` (``EVAL`` once if the server has not cached it).

Data layout, for one payer (``base`` is ``<prefix>:{<payer tag>}:``):

* ``base .. "v:" .. key`` -- a string ``"<ttl_ms>:<value>"``, with a Redis
  expiry of ``ttl_ms`` when ``ttl_ms > 0``. The TTL travels with the value so
  a read can slide the expiry by the entry's own TTL.
* ``base .. "idx"`` -- a sorted set of the payer's keys, every score 0, so
  ``ZRANGEBYLEX`` walks them in byte (= code point) order. Its expiry is kept
  later than that of its longest-lived entry (never, once an entry that never
  expires is written), so an abandoned payer's index goes away by itself.
  Members whose value key has expired are dropped when a ``get``, ``list``
  or ``purge_expired`` meets them.

Beside them, one key for the whole store: the payers index (see
``RedisStoreBase.payers_key``), a sorted set of the payers that have a key
index. It lives in a slot of its own, so no script ever touches it (a script
may only touch one slot on a cluster); instead the scripts *report* when the
payer's key index appeared or went away and the client updates the payers
index with a separate command: ``set`` and ``set_many`` return 1 when they
made the index (it did not exist), ``delete``, ``delete_many`` and ``sweep``
return whether their ``ZREM`` emptied it (Redis then deletes the key).

``commit`` is the one script that may touch the payers index, and only on a
plain (non-cluster) Redis, where every key is on one server: the store then
passes the payers index in ``KEYS`` and the payer in ``ARGV``. On a cluster
it stays a separate command, as above.

Every key a script touches is passed in ``KEYS``, except the value keys that
``list`` and ``sweep`` discover through the index: those are derived from the
``base`` argument and share the payer's hash tag, so they live in the same
Redis Cluster slot as the index. Index members (the session keys) are not
sent at all: a script cuts them out of the value key names it is given.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

__all__ = [
    "COMMIT",
    "DELETE",
    "DELETE_MANY",
    "GET",
    "GET_MANY",
    "LIST",
    "SET",
    "SET_MANY",
    "SWEEP",
    "TAKE",
    "LuaScript",
]


@dataclass(frozen=True, slots=True)
class LuaScript:
    """A script's source and its SHA1, as ``EVALSHA`` wants it."""

    name: str
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


# Keep the index alive at least as long as its longest-lived entry. ``left``
# is the index's PTTL read before this script wrote to it (-2: it did not
# exist, -1: it never expires). When it must be extended it gets twice the
# entry's TTL, so the next reads and writes of the payer within that TTL find
# it long enough and skip the write.
_KEEP_INDEX = """
local function keep_index(idx, left, ttl)
  if ttl == 0 then
    if left >= 0 then redis.call('PERSIST', idx) end
  elseif left == -2 or (left >= 0 and left < ttl) then
    redis.call('PEXPIRE', idx, 2 * ttl)
  end
end
"""

# "<ttl>:<value>" -> ttl, value
_SPLIT = """
local function split(raw)
  local sep = string.find(raw, ':', 1, true)
  return tonumber(string.sub(raw, 1, sep - 1)), string.sub(raw, sep + 1)
end
"""

# A value key is "<base>v:<key>" and the index "<base>idx": the key of a
# value key starts at position #idx.
_MEMBER = """
local function member(idx, vkey)
  return string.sub(vkey, #idx)
end
"""

# Slide an entry's expiry after a read, and the index's with it; put the
# member back if the index itself was lost (e.g. evicted).
_TOUCH = """
local function touch(idx, vkey, ttl)
  if ttl > 0 then redis.call('PEXPIRE', vkey, ttl) end
  local left = redis.call('PTTL', idx)
  if left == -2 then redis.call('ZADD', idx, 0, member(idx, vkey)) end
  if ttl > 0 then keep_index(idx, left, ttl) end
end
"""

_READ = _KEEP_INDEX + _SPLIT + _MEMBER + _TOUCH

# KEYS: idx, vkey. ARGV: ttl, "<ttl>:<value>". Returns 1 if it made the index, else 0.
SET = LuaScript(
    "set",
    _KEEP_INDEX
    + _MEMBER
    + """
local idx, vkey, ttl = KEYS[1], KEYS[2], tonumber(ARGV[1])
local left = redis.call('PTTL', idx)
if ttl > 0 then
  redis.call('SET', vkey, ARGV[2], 'PX', ttl)
else
  redis.call('SET', vkey, ARGV[2])
end
redis.call('ZADD', idx, 0, member(idx, vkey))
keep_index(idx, left, ttl)
if left == -2 then return 1 end
return 0
""",
)

# KEYS: idx, vkey1..n. ARGV: ttl, blob1..n. Returns 1 if it made the index, else 0.
SET_MANY = LuaScript(
    "set_many",
    _KEEP_INDEX
    + _MEMBER
    + """
local idx, ttl = KEYS[1], tonumber(ARGV[1])
local left = redis.call('PTTL', idx)
for i = 2, #KEYS do
  if ttl > 0 then
    redis.call('SET', KEYS[i], ARGV[i], 'PX', ttl)
  else
    redis.call('SET', KEYS[i], ARGV[i])
  end
  redis.call('ZADD', idx, 0, member(idx, KEYS[i]))
end
keep_index(idx, left, ttl)
if left == -2 then return 1 end
return 0
""",
)

# KEYS: idx, vkey. Returns the value or nil.
GET = LuaScript(
    "get",
    _READ
    + """
local idx, vkey = KEYS[1], KEYS[2]
local raw = redis.call('GET', vkey)
if not raw then
  redis.call('ZREM', idx, member(idx, vkey))
  return false
end
local ttl, value = split(raw)
touch(idx, vkey, ttl)
return value
""",
)

# KEYS: idx, vkey1..n. Returns the values (nil where missing).
GET_MANY = LuaScript(
    "get_many",
    _READ
    + """
local idx = KEYS[1]
local out = {}
for i = 2, #KEYS do
  local raw = redis.call('GET', KEYS[i])
  if raw then
    local ttl, value = split(raw)
    touch(idx, KEYS[i], ttl)
    out[i - 1] = value
  else
    redis.call('ZREM', idx, member(idx, KEYS[i]))
    out[i - 1] = false
  end
end
return out
""",
)

# 1 if ``dropped`` members were removed from ``idx`` and that emptied it.
_EMPTIED = """
local function emptied(idx, dropped)
  if dropped > 0 and redis.call('EXISTS', idx) == 0 then return 1 end
  return 0
end
"""

# KEYS: idx, vkey. Returns {1 if a live entry was removed, 1 if the index emptied}.
DELETE = LuaScript(
    "delete",
    _MEMBER
    + _EMPTIED
    + """
local n = redis.call('DEL', KEYS[2])
local dropped = redis.call('ZREM', KEYS[1], member(KEYS[1], KEYS[2]))
return {n, emptied(KEYS[1], dropped)}
""",
)

# KEYS: idx, vkey1..n (distinct). Returns {how many were live, 1 if the index emptied}.
DELETE_MANY = LuaScript(
    "delete_many",
    _MEMBER
    + _EMPTIED
    + """
local n, dropped = 0, 0
for i = 2, #KEYS do
  n = n + redis.call('DEL', KEYS[i])
  dropped = dropped + redis.call('ZREM', KEYS[1], member(KEYS[1], KEYS[i]))
end
return {n, emptied(KEYS[1], dropped)}
""",
)

# KEYS: idx. ARGV: vbase, lo, hi (ZRANGEBYLEX bounds), limit (0 = all),
# keys_only ("1"/"0"). Returns {more, key1, value1, key2, value2, ...}
# (keys only when keys_only). Walks the index from ``lo``, skipping and
# dropping members whose value expired, until ``limit`` live entries and
# one more (to know whether a next page exists) were seen.
LIST = LuaScript(
    "list",
    """
local idx, vbase, lo, hi = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local limit, keys_only = tonumber(ARGV[4]), ARGV[5] == '1'
local out = {0}
local found = 0
while true do
  local want = 512
  if limit > 0 then want = limit - found + 1 end
  local members = redis.call('ZRANGEBYLEX', idx, lo, hi, 'LIMIT', 0, want)
  for i = 1, #members do
    local member = members[i]
    local raw
    if keys_only then
      raw = redis.call('EXISTS', vbase .. member) == 1
    else
      raw = redis.call('GET', vbase .. member)
    end
    if raw then
      if limit > 0 and found == limit then
        out[1] = 1
        return out
      end
      found = found + 1
      out[#out + 1] = member
      if not keys_only then
        out[#out + 1] = string.sub(raw, string.find(raw, ':', 1, true) + 1)
      end
    else
      redis.call('ZREM', idx, member)
    end
  end
  if #members < want then return out end
  lo = '(' .. members[#members]
end
""",
)

# KEYS: idx. ARGV: vbase, lo, count. Drops up to ``count`` scanned members
# whose value key is gone. Returns {removed, scanned, last member scanned,
# 1 if that emptied the index}.
SWEEP = LuaScript(
    "sweep",
    _EMPTIED
    + """
local idx, vbase = KEYS[1], ARGV[1]
local members = redis.call('ZRANGEBYLEX', idx, ARGV[2], '+', 'LIMIT', 0, tonumber(ARGV[3]))
local removed = 0
for i = 1, #members do
  if redis.call('EXISTS', vbase .. members[i]) == 0 then
    removed = removed + redis.call('ZREM', idx, members[i])
  end
end
return {removed, #members, members[#members] or '', emptied(idx, removed)}
""",
)

# KEYS: idx, the value keys to set (n_set), the value keys to delete (n_del),
# the guard's record keys (n_rec), then, on a plain Redis only, the payers
# index. ARGV: n_set, n_del, n_rec, the payer ("" on a cluster: the payers
# index is not ours to touch), then ttl and blob per set, then value and
# PXAT (unix ms) per record. Returns {1 if it made the index, 1 if it emptied
# it}: with the payer given, the payers index is already up to date.
#
# A settled paid call's whole commit in one atomic step: its staged session
# writes (as ``set_many``/``delete_many``) and the records of the payment
# (sign-in, the kept answer for payment identifiers). The records are the
# replay guard's keys, ``<prefix>:replay:{<payer tag>}:...``: the same hash
# tag as the session's keys, so one slot on a cluster.
COMMIT = LuaScript(
    "commit",
    _KEEP_INDEX
    + _MEMBER
    + _EMPTIED
    + """
local idx = KEYS[1]
local n_set, n_del, n_rec = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local payer = ARGV[4]
local made, gone = 0, 0
if n_set > 0 then
  local left = redis.call('PTTL', idx)
  -- The index must outlive the longest-lived entry written: 0 if one never expires.
  local longest = -1
  for i = 1, n_set do
    local vkey, ttl = KEYS[1 + i], tonumber(ARGV[3 + 2 * i])
    if ttl > 0 then
      redis.call('SET', vkey, ARGV[4 + 2 * i], 'PX', ttl)
    else
      redis.call('SET', vkey, ARGV[4 + 2 * i])
    end
    redis.call('ZADD', idx, 0, member(idx, vkey))
    if ttl == 0 or longest == 0 then longest = 0 elseif ttl > longest then longest = ttl end
  end
  keep_index(idx, left, longest)
  if left == -2 then made = 1 end
end
if n_del > 0 then
  local dropped = 0
  for i = 1, n_del do
    local vkey = KEYS[1 + n_set + i]
    redis.call('DEL', vkey)
    dropped = dropped + redis.call('ZREM', idx, member(idx, vkey))
  end
  gone = emptied(idx, dropped)
end
local at = 4 + 2 * n_set
for i = 1, n_rec do
  redis.call('SET', KEYS[1 + n_set + n_del + i], ARGV[at + 2 * i - 1], 'PXAT', ARGV[at + 2 * i])
end
if payer ~= '' then
  -- One server holds everything: list or unlist the payer in the same step.
  local payers = KEYS[2 + n_set + n_del + n_rec]
  if made == 1 then redis.call('ZADD', payers, 0, payer) end
  if gone == 1 then redis.call('ZREM', payers, payer) end
end
return {made, gone}
""",
)

# KEYS: a guard's record key. ARGV: value, PXAT (unix ms). Keeps the value
# unless the key holds something, and returns what it holds (nil: kept).
# One round trip where ``SET NX`` then ``GET`` take two (``SET NX GET``
# needs Redis 7).
TAKE = LuaScript(
    "take",
    """
local found = redis.call('GET', KEYS[1])
if found then return found end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
return false
""",
)

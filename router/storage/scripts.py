"""Every Lua script Turnout runs in Redis.

The outcome and feedback scripts apply a list of plain commands built in Python (so the key
layout and the field semantics stay in ``router.storage.keys`` and the event encoders) behind a
guard evaluated inside Redis: a request's attribution hash. Keys are passed in ``KEYS``; each
command names its key by index. Every call's keys share one hash tag (one experiment's, or the
operators'), so each script runs on Redis Cluster as on one instance. The flag script sets a
flag, audits and publishes it at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from router.storage import keys

Command = tuple[str, str, tuple[str, ...]]
"""One Redis command: (name, key, arguments as strings)."""

_APPLY = """
local function apply(commands)
  for _, c in ipairs(commands) do
    local argv = {c[1], KEYS[c[2]]}
    for j = 3, #c do argv[#argv + 1] = c[j] end
    redis.call(unpack(argv))
  end
end
"""

WRITE_EVENTS_LUA = (
    _APPLY
    + """
-- ARGV[1]: JSON {e = events {g = guard key index, t = token, a = attribution fields},
-- x = guard TTL, c = the batch's commands (stream entries, summed counters)}.
-- All or nothing: if any event's guard already exists, nothing is written. Returns
-- {applied, status per event}: 1 new, 2 written before with the same token (a retried
-- batch), 3 the guard holds another token (the request id was used twice).
local batch = cjson.decode(ARGV[1])
local statuses = {}
local clash = false
for i, e in ipairs(batch.e) do
  local seen = redis.call('HGET', KEYS[e.g], '"""
    + keys.TOKEN
    + """')
  if not seen then
    statuses[i] = 1
  else
    clash = true
    statuses[i] = (seen == e.t) and 2 or 3
  end
end
if clash then return {0, unpack(statuses)} end
for _, e in ipairs(batch.e) do
  redis.call('HSET', KEYS[e.g], '"""
    + keys.TOKEN
    + """', e.t, unpack(e.a))
  redis.call('EXPIRE', KEYS[e.g], batch.x)
end
apply(batch.c)
return {1, unpack(statuses)}
"""
)

ACCEPT_FEEDBACK_LUA = (
    _APPLY
    + """
-- KEYS[1]: the request's attribution hash; every other key is in the same experiment's slot.
-- ARGV[1]: the token read with it (so an id that expired and was reused in between is not
-- credited to the new request), ARGV[2]: the reward, ARGV[3]: JSON commands (counters, the
-- feedback stream, and the bandit posterior update unless the experiment is frozen).
-- Returns 'ok', 'missing' or 'duplicate'.
if redis.call('HGET', KEYS[1], '"""
    + keys.TOKEN
    + """') ~= ARGV[1] then return 'missing' end
if redis.call('HSETNX', KEYS[1], '"""
    + keys.FEEDBACK_REWARD
    + """', ARGV[2]) == 0 then return 'duplicate' end
apply(cjson.decode(ARGV[3]))
return 'ok'
"""
)


class KeyTable:
    """Keys of one script call, each listed once; commands refer to them by 1-based index."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self._index: dict[str, int] = {}

    def ref(self, key: str) -> int:
        index = self._index.get(key)
        if index is None:
            self.keys.append(key)
            index = self._index[key] = len(self.keys)
        return index

    def encode(self, commands: Sequence[Command]) -> list[list[Any]]:
        return [[name, self.ref(key), *args] for name, key, args in commands]


# KEYS: the flags hash, the audit stream. ARGV: field, new JSON value ('' clears), default JSON,
# audit maxlen, channel, then the audit entry's fields. Returns {audit entry id, old value}.
CHANGE_FLAG_LUA = """
local old = redis.call('HGET', KEYS[1], ARGV[1]) or ARGV[3]
local new = ARGV[2]
if new == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  new = ARGV[3]
else
  redis.call('HSET', KEYS[1], ARGV[1], new)
end
local fields = {'old', old, 'new', new}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], '*', unpack(fields))
redis.call('PUBLISH', ARGV[5], ARGV[1])
return {id, old}
"""


# Rollout driver lease (one experiment's keys only). KEYS: the lease, the fence counter.
# ARGV: owner, TTL in ms. Returns the owner's fencing token (renewed or new), or 0 when another
# owner holds it. A new holder always gets a larger token than any before it.
ACQUIRE_LEASE_LUA = """
local current = redis.call('GET', KEYS[1])
if current then
  local owner, token = string.match(current, '^(.*)|(%d+)$')
  if owner == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(token)
  end
  return 0
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. token, 'PX', ARGV[2])
return token
"""

# KEYS: the lease. ARGV: the holder's lease value. Deletes it only if still held by that value.
RELEASE_LEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# A rollout transition, compare-and-set on the state's sequence number and fenced by the lease.
# KEYS: the state hash, the history stream, the lease. ARGV: the driver's lease value ('' for an
# operator, who needs no lease), its fencing token ('' for an operator), the sequence number the
# change was decided on, the history maxlen, JSON list of state fields, JSON list of history
# fields ('' for no history entry and no new sequence number: a gate-evaluation update).
# Returns 'ok', 'lost_lease', 'fenced' (a newer driver wrote since) or 'conflict' (the state moved
# on since it was read).
TRANSITION_LUA = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[1] then return 'lost_lease' end
local fence = tonumber(redis.call('HGET', KEYS[1], 'fence') or '0')
if ARGV[2] ~= '' and fence > tonumber(ARGV[2]) then return 'fenced' end
local seq = redis.call('HGET', KEYS[1], 'seq') or '0'
if seq ~= ARGV[3] then return 'conflict' end
local fields = cjson.decode(ARGV[5])
if ARGV[2] ~= '' then
  fields[#fields + 1] = 'fence'
  fields[#fields + 1] = ARGV[2]
end
if ARGV[6] ~= '' then
  local next_seq = tostring(tonumber(seq) + 1)
  fields[#fields + 1] = 'seq'
  fields[#fields + 1] = next_seq
  local entry = cjson.decode(ARGV[6])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'seq', next_seq, unpack(entry))
end
redis.call('HSET', KEYS[1], unpack(fields))
return 'ok'
"""


# A hash replaced whole (the drift verdicts): readers see the old fields or the new, never a mix.
# KEYS: the hash. ARGV: field, value, field, value, ...
REPLACE_HASH_LUA = """
redis.call('DEL', KEYS[1])
if #ARGV > 0 then redis.call('HSET', KEYS[1], unpack(ARGV)) end
return 1
"""

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
from typing import Any, Final

from router.storage import keys

Command = tuple[str, str, tuple[str, ...]]
"""One Redis command: (name, key, arguments as strings)."""

UNIT_OP: Final = "TURNOUT.UNIT"
"""Add (dn, dy) to one user's state and to its arm's per-user sums. Args: prefix (``u_``
requests and failures, ``a_`` labelled and correct, ``s_`` shadow pairs and agreements: whole
numbers; ``r_`` rewards, ``d_`` score deltas: fractions), variant, user, dn, dy, the bound on
users per key."""
UNIT_FEEDBACK_OP: Final = "TURNOUT.UNITFB"
"""A reward on a request of slot S: folded at once when S has matured, else held per slot.
Args: the slot's staging hash (a key), variant, user, slot, reward, bound, staging TTL."""
SHADOW_LABEL_OP: Final = "TURNOUT.SHADOWLABEL"
"""Store a shadow's label on the request's attribution hash and, if labelled feedback is there
already, score both sides against it. Args: the shadow's pair counters (a key), shadow, label."""
EXTRA_KEY_OPS: Final = frozenset({UNIT_FEEDBACK_OP, SHADOW_LABEL_OP})
"""Ops whose first argument is a key too (encoded as its index)."""

# Per-user sums (router.reports.units): a user's (n, y) live at ``{v}|{user}`` (``|r`` for
# rewards) as "n y"; the arm's sums of n, y, n^2, y^2 and n*y are updated from the old and new
# values, so the sums stay exact with O(1) work per event. A new user past the bound is not added
# and marks the arm's sums partial (the gate then waits: it never decides on partial sums).
_UNITS = """
local unit_sums = {}
local unit_order = {}
local users_seen = {}
local function add_sum(key, field, delta)
  local sums = unit_sums[key]
  if not sums then
    sums = {}
    unit_sums[key] = sums
    unit_order[#unit_order + 1] = key
  end
  sums[field] = (sums[field] or 0) + delta
end

-- A new user, unless the key's bound is reached (then its arm's sums are marked partial).
local function admit(key, prefix, v, bound)
  local counter = '~|' .. prefix .. 'users'
  local id = key .. counter
  if users_seen[id] == nil then
    users_seen[id] = tonumber(redis.call('HGET', key, counter) or '0')
  end
  if users_seen[id] >= tonumber(bound) then
    redis.call('HSET', key, v .. '|units_full', '1')
    return false
  end
  users_seen[id] = users_seen[id] + 1
  add_sum(key, counter, 1)
  add_sum(key, v .. '|' .. prefix .. 'k', 1)
  return true
end

local function add_moments(key, p, n, y, dn, dy)
  local n2, y2 = n + dn, y + dy
  add_sum(key, p .. 'n', dn)
  add_sum(key, p .. 'y', dy)
  add_sum(key, p .. 'nn', n2 * n2 - n * n)
  add_sum(key, p .. 'yy', y2 * y2 - y * y)
  add_sum(key, p .. 'ny', n2 * y2 - n * y)
end

-- Whole numbers (requests and failures, labelled and correct, pairs and agreements) are packed
-- in one integer (n * 2^26 + y), so one HINCRBY both updates the user and returns what it was.
local SHIFT = 67108864
local function unit_count(key, prefix, v, user, dn, dy, bound)
  local field = v .. '|' .. user
  if prefix ~= 'u_' then field = field .. '|' .. prefix end
  local packed = redis.call('HINCRBY', key, field, dn * SHIFT + dy)
  local n2 = math.floor(packed / SHIFT)
  local y2 = packed - n2 * SHIFT
  local n, y = n2 - dn, y2 - dy
  if n == 0 and not admit(key, prefix, v, bound) then
    redis.call('HDEL', key, field)
    return
  end
  add_moments(key, v .. '|' .. prefix, n, y, dn, dy)
end

-- Fractions (rewards, score deltas) are kept as "n y".
local function unit_fraction(key, prefix, v, user, dn, dy, bound)
  local field = v .. '|' .. user .. '|' .. prefix
  local n, y = 0, 0
  local current = redis.call('HGET', key, field)
  if current then
    local a, b = string.match(current, '^(%S+) (%S+)$')
    n, y = tonumber(a), tonumber(b)
  elseif not admit(key, prefix, v, bound) then
    return
  end
  redis.call('HSET', key, field, string.format('%.17g %.17g', n + dn, y + dy))
  add_moments(key, v .. '|' .. prefix, n, y, dn, dy)
end

local WHOLE = {u_ = true, a_ = true, s_ = true}
-- Feedback-derived sums (rewards, accuracy) count a user only if the same key holds that user's
-- requests: when the requests' sums expired or were lost, the feedback is counted apart
-- ('{v}|fb_orphan') and skipped, so the two never disagree on who the users are.
local FEEDBACK = {r_ = true, a_ = true}
local function unit(key, prefix, v, user, dn, dy, bound)
  dn, dy = tonumber(dn), tonumber(dy)
  if FEEDBACK[prefix] and redis.call('HEXISTS', key, v .. '|' .. user) == 0 then
    redis.call('HINCRBY', key, v .. '|fb_orphan', dn)
    return
  end
  if WHOLE[prefix] then
    unit_count(key, prefix, v, user, dn, dy, bound)
  else
    unit_fraction(key, prefix, v, user, dn, dy, bound)
  end
end

-- The arms' sums change once per call, however many users the call touched.
local function flush_units()
  for _, key in ipairs(unit_order) do
    for field, delta in pairs(unit_sums[key]) do
      if delta ~= 0 then
        redis.call('HINCRBYFLOAT', key, field, string.format('%.17g', delta))
      end
    end
  end
end

local function unit_feedback(key, staged, v, user, slot, reward, bound, ttl)
  local matured = tonumber(redis.call('HGET', key, '~|matured') or '-1')
  if tonumber(slot) <= matured then
    unit(key, 'r_', v, user, 1, reward, bound)
    return
  end
  redis.call('HINCRBY', staged, v .. '|' .. user .. '|n', 1)
  redis.call('HINCRBYFLOAT', staged, v .. '|' .. user .. '|y', reward)
  redis.call('EXPIRE', staged, ttl)
end
"""

# Shadow accuracy from labelled feedback, exactly once per (request, shadow): the label and the
# shadow's answer may reach Redis in either order, on any replica; the second one scores.
_SHADOW_SCORE = (
    """
local function score_shadow(attribution, pair, shadow)
  local label = redis.call('HGET', attribution, '"""
    + keys.SHADOW_LABEL
    + """' .. shadow)
  local truth = redis.call('HGET', attribution, '"""
    + keys.FEEDBACK_LABEL
    + """')
  if not label or not truth then return end
  if redis.call('HSETNX', attribution, '"""
    + keys.SHADOW_SCORED
    + """' .. shadow, '1') == 0 then return end
  local primary = redis.call('HGET', attribution, 'label') == truth
  redis.call('HINCRBY', pair, '"""
    + keys.SHADOW_FEEDBACK_N
    + """', 1)
  redis.call('HINCRBY', pair, '"""
    + keys.SHADOW_PRIMARY_CORRECT
    + """', primary and 1 or 0)
  redis.call('HINCRBY', pair, '"""
    + keys.SHADOW_SHADOW_CORRECT
    + """', label == truth and 1 or 0)
end

local function shadow_label(attribution, pair, shadow, label)
  redis.call('HSET', attribution, '"""
    + keys.SHADOW_LABEL
    + """' .. shadow, label)
  score_shadow(attribution, pair, shadow)
end
"""
)

_APPLY = (
    _UNITS
    + _SHADOW_SCORE
    + """
local function apply(commands)
  for _, c in ipairs(commands) do
    if c[1] == '"""
    + UNIT_OP
    + """' then
      unit(KEYS[c[2]], c[3], c[4], c[5], c[6], c[7], c[8])
    elseif c[1] == '"""
    + UNIT_FEEDBACK_OP
    + """' then
      unit_feedback(KEYS[c[2]], KEYS[c[3]], c[4], c[5], c[6], c[7], c[8], c[9])
    elseif c[1] == '"""
    + SHADOW_LABEL_OP
    + """' then
      shadow_label(KEYS[c[2]], KEYS[c[3]], c[4], c[5])
    else
      local argv = {c[1], KEYS[c[2]]}
      for j = 3, #c do argv[#argv + 1] = c[j] end
      redis.call(unpack(argv))
    end
  end
  flush_units()
end
"""
)

# Fold matured slots' held rewards into the per-user reward sums, in slot order, then move the
# watermark. KEYS: the window's units hash, then the staging hash of each slot to fold (in
# order). ARGV: the last slot folded by this call, the bound on users. Returns the watermark.
FOLD_REWARDS_LUA = (
    _UNITS
    + """
local matured = tonumber(redis.call('HGET', KEYS[1], '~|matured') or '-1')
local last = tonumber(ARGV[1])
if last <= matured then return matured end
for i = 2, #KEYS do
  local held = redis.call('HGETALL', KEYS[i])
  local sums = {}
  local order = {}
  for j = 1, #held, 2 do
    local who, part = string.match(held[j], '^(.*)|(%a)$')
    if who then
      if not sums[who] then
        sums[who] = {0, 0}
        order[#order + 1] = who
      end
      sums[who][part == 'n' and 1 or 2] = tonumber(held[j + 1])
    end
  end
  for _, who in ipairs(order) do
    local v, user = string.match(who, '^([^|]*)|(.*)$')
    unit(KEYS[1], 'r_', v, user, sums[who][1], sums[who][2], ARGV[2])
  end
  redis.call('DEL', KEYS[i])
end
flush_units()
redis.call('HSET', KEYS[1], '~|matured', last)
return last
"""
)

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
-- feedback stream, and the bandit posterior update unless the experiment is frozen),
-- ARGV[4]: the true label (JSON) of labelled feedback, else '', ARGV[5]: JSON {shadow: index
-- of its pair counters in KEYS} for every shadow whose label the caller saw on the request.
-- Returns 'ok', 'missing', 'duplicate', or 'shadows' when a shadow's label arrived since the
-- caller read the request (nothing written: it reads again and names that shadow's key too).
if redis.call('HGET', KEYS[1], '"""
    + keys.TOKEN
    + """') ~= ARGV[1] then return 'missing' end
if redis.call('HEXISTS', KEYS[1], '"""
    + keys.FEEDBACK_REWARD
    + """') == 1 then return 'duplicate' end
local truth = ARGV[4]
local shadows = {}
if truth ~= '' then
  shadows = cjson.decode(ARGV[5])
  local prefix = '"""
    + keys.SHADOW_LABEL
    + """'
  local fields = redis.call('HKEYS', KEYS[1])
  for _, field in ipairs(fields) do
    local shadow = string.sub(field, #prefix + 1)
    if string.sub(field, 1, #prefix) == prefix and shadows[shadow] == nil then
      return 'shadows'
    end
  end
end
redis.call('HSET', KEYS[1], '"""
    + keys.FEEDBACK_REWARD
    + """', ARGV[2])
apply(cjson.decode(ARGV[3]))
if truth ~= '' then
  redis.call('HSET', KEYS[1], '"""
    + keys.FEEDBACK_LABEL
    + """', truth)
  for shadow, index in pairs(shadows) do score_shadow(KEYS[1], KEYS[index], shadow) end
end
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
        out: list[list[Any]] = []
        for name, key, args in commands:
            if name in EXTRA_KEY_OPS:
                out.append([name, self.ref(key), self.ref(args[0]), *args[1:]])
            else:
                out.append([name, self.ref(key), *args])
        return out


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

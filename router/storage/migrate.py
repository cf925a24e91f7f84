"""``turnout migrate-keys``: move data written before the Cluster-ready layout into it.

Before it, an experiment's keys had no hash tag (``turnout:exp:<e>:...``), a request's
attribution was ``turnout:req:<rid>`` and the operators' keys were ``turnout:flags``,
``turnout:audit`` and ``turnout:promotions``. Each old key maps to exactly one new key
(``plan``: pure). Moving one is one script, atomic: a rename when the new key does not exist
yet, else a merge (counters summed, sets united, streams interleaved by entry id, anything
else kept where the new layout already has it), then the old key is deleted. A request also
gets its locator, with the attribution's TTL. Run twice, the second run finds nothing to do;
stopped halfway, the next run finishes. It runs on the one instance (or Sentinel primary) that
holds the old layout: the old layout never worked on a Cluster.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from router.storage import keys
from router.storage.client import RedisClient
from router.storage.codec import as_text_dict, text

OLD_EXPERIMENT = re.compile(rf"^{keys.PREFIX}:exp:(?P<e>[a-z0-9][a-z0-9_.-]*):(?P<rest>.+)$")
OLD_REQUEST = f"{keys.PREFIX}:req:"
OLD_OPERATORS = {
    f"{keys.PREFIX}:flags": (keys.FLAGS, "keep"),
    f"{keys.PREFIX}:audit": (keys.AUDIT, "keep"),
    f"{keys.PREFIX}:promotions": (keys.PROMOTIONS, "keep"),
}
COUNTER_PARTS = ("variant:", "assigned:", "shadow:")
"""Experiment hashes that hold counters (summed on a merge); ``bandit`` is one too."""


@dataclass(frozen=True, slots=True)
class Move:
    old: str
    new: str
    kind: str
    """``experiment``, ``request``, ``shadow_guard`` or ``operators``: what the report counts."""
    merge: str
    """How a hash merges into an existing new key: ``sum`` (counters) or ``keep``."""
    experiment: str | None = None
    locator: str | None = None
    """For a request: the locator to write beside its new attribution key."""


@dataclass
class Plan:
    moves: list[Move] = field(default_factory=list)
    conflicts: int = 0
    """Moves whose new key exists already (they merge)."""
    skipped: list[str] = field(default_factory=list)
    """Old-looking keys that cannot be placed (a request hash naming no experiment)."""

    def counts(self) -> dict[str, int]:
        return dict(Counter(m.kind for m in self.moves))


def plan_experiment_key(key: str) -> Move | None:
    """``turnout:exp:<e>:<rest>`` -> ``turnout:exp:{<e>}:<rest>`` (None: not an old key)."""
    found = OLD_EXPERIMENT.match(key)
    if found is None:
        return None
    experiment, rest = found["e"], found["rest"]
    merge = "sum" if rest == "bandit" or rest.startswith(COUNTER_PARTS) else "keep"
    new = f"{keys.PREFIX}:exp:{keys.slot_tag(experiment)}:{rest}"
    return Move(key, new, "experiment", merge, experiment)


def plan_request_key(key: str, fields: dict[str, str]) -> Move | None:
    """An old request hash: an outcome's attribution, or a mirrored call's write guard."""
    experiment = fields.get("experiment")
    if experiment is None:
        return None
    rest = key.removeprefix(OLD_REQUEST)
    if "primary" in fields and "variant" not in fields and ":shadow:" in rest:
        rid, _, shadow = rest.rpartition(":shadow:")
        return Move(
            key, keys.shadow_request(experiment, rid, shadow), "shadow_guard", "keep", experiment
        )
    return Move(
        key,
        keys.attribution(experiment, rest),
        "request",
        "keep",
        experiment,
        keys.request(rest),
    )


# KEYS[1] old, KEYS[2] new, optional KEYS[3] locator. ARGV[1] merge mode (sum | keep),
# ARGV[2] the locator's value. Returns 'gone', 'moved' or 'merged'.
MIGRATE_KEY_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'gone' end
local ttl = redis.call('PTTL', KEYS[1])
local result = 'moved'
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('RENAME', KEYS[1], KEYS[2])
else
  result = 'merged'
  local kind = redis.call('TYPE', KEYS[1]).ok
  if kind == 'hash' then
    local flat = redis.call('HGETALL', KEYS[1])
    for i = 1, #flat, 2 do
      if ARGV[1] == 'sum' then
        redis.call('HINCRBYFLOAT', KEYS[2], flat[i], flat[i + 1])
      else
        redis.call('HSETNX', KEYS[2], flat[i], flat[i + 1])
      end
    end
  elseif kind == 'set' then
    redis.call('SUNIONSTORE', KEYS[2], KEYS[2], KEYS[1])
  elseif kind == 'stream' then
    local a = redis.call('XRANGE', KEYS[1], '-', '+')
    local b = redis.call('XRANGE', KEYS[2], '-', '+')
    local function id_of(e)
      local ms, seq = string.match(e[1], '(%d+)-(%d+)')
      return tonumber(ms), tonumber(seq)
    end
    local function before(x, y)
      local xm, xs = id_of(x)
      local ym, ys = id_of(y)
      return xm < ym or (xm == ym and xs < ys)
    end
    redis.call('DEL', KEYS[2])
    local i, j, last_ms, last_seq = 1, 1, -1, -1
    while i <= #a or j <= #b do
      local e
      if j > #b or (i <= #a and before(a[i], b[j])) then e = a[i]; i = i + 1
      else e = b[j]; j = j + 1 end
      local ms, seq = id_of(e)
      if ms < last_ms or (ms == last_ms and seq <= last_seq) then
        ms, seq = last_ms, last_seq + 1
      end
      local argv = {'XADD', KEYS[2], ms .. '-' .. seq}
      for _, v in ipairs(e[2]) do argv[#argv + 1] = v end
      redis.call(unpack(argv))
      last_ms, last_seq = ms, seq
    end
  end
  redis.call('DEL', KEYS[1])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
end
if KEYS[3] then
  if ttl > 0 then
    redis.call('SET', KEYS[3], ARGV[2], 'PX', ttl, 'NX')
  else
    redis.call('SET', KEYS[3], ARGV[2], 'NX')
  end
end
return result
"""


async def plan(client: RedisClient, batch: int = 1000) -> Plan:
    """Every old key and where it goes; reads only."""
    result = Plan()
    requests: list[str] = []
    async for raw in client.scan_iter(match=f"{keys.PREFIX}:*", count=batch):
        key = text(raw)
        if key in OLD_OPERATORS:
            new, merge = OLD_OPERATORS[key]
            result.moves.append(Move(key, new, "operators", merge))
        elif key.startswith(OLD_REQUEST):
            requests.append(key)
        elif (move := plan_experiment_key(key)) is not None:
            result.moves.append(move)
    for start in range(0, len(requests), batch):
        chunk = requests[start : start + batch]
        async with client.pipeline(transaction=False) as pipe:
            for key in chunk:
                pipe.hgetall(key)
            replies = await pipe.execute()
        for key, reply in zip(chunk, replies, strict=True):
            move = plan_request_key(key, as_text_dict(reply))
            if move is None:
                result.skipped.append(key)
            else:
                result.moves.append(move)
    news = [m.new for m in result.moves]
    for start in range(0, len(news), batch):
        async with client.pipeline(transaction=False) as pipe:
            for key in news[start : start + batch]:
                pipe.exists(key)
            result.conflicts += sum(int(x) for x in await pipe.execute())
    return result


async def apply(client: RedisClient, moves: list[Move]) -> dict[str, int]:
    """Run every move; returns how many were moved, merged, or already gone."""
    script = client.register_script(MIGRATE_KEY_LUA)
    done: Counter[str] = Counter()
    for move in moves:
        names = [move.old, move.new] + ([move.locator] if move.locator else [])
        result = await script(keys=names, args=[move.merge, move.experiment or ""])
        done[text(result)] += 1
    return dict(done)

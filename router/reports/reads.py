"""The reports' only I/O: consistent snapshots of what the recorder keeps in Redis."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from router.reports.units import unit_sum_fields
from router.storage import keys
from router.storage.client import RedisClient
from router.storage.codec import as_text_dict, text

RECENT_DISAGREEMENTS = 10


@dataclass(frozen=True)
class Recorded:
    """What Redis holds for one experiment."""

    counters: dict[str, dict[str, str]]
    """Variant -> its counter hash."""
    assigned_now: dict[str, int]
    """Variant -> assignments under the configuration in force."""
    bandit: dict[str, str] = field(default_factory=dict)
    """The experiment's bandit evidence hash (empty unless it ran as a bandit)."""
    units: dict[str, str] = field(default_factory=dict)
    """Per-user sums under the configuration in force (sticky experiments), by field."""


def units_fields(names: Iterable[str]) -> list[str]:
    fields: list[str] = []
    for name in names:
        for prefix in ("u_", "r_", "a_"):
            fields += unit_sum_fields(name, prefix)
        fields += [
            f"{name}|{keys.WINDOW_NOKEY}",
            f"{name}|{keys.WINDOW_UNITS_FULL}",
            f"{name}|{keys.WINDOW_ORPHAN_FEEDBACK}",
        ]
    return fields


async def read_recorded(
    client: RedisClient, experiment: str, config_version: str, configured: Iterable[str]
) -> Recorded:
    seen = {text(v) for v in await client.smembers(keys.variants(experiment))}
    names = sorted(set(configured) | seen)
    async with client.pipeline(transaction=True) as pipe:
        for name in names:
            pipe.hgetall(keys.counters(experiment, name))
        pipe.hgetall(keys.assigned(experiment, config_version))
        pipe.hgetall(keys.bandit(experiment))
        fields = units_fields(names)
        pipe.hmget(keys.config_units(experiment, config_version), fields)
        replies = await pipe.execute()
    counters = {name: as_text_dict(reply) for name, reply in zip(names, replies, strict=False)}
    assigned = {k: int(v) for k, v in as_text_dict(replies[-3]).items()}
    units = {f: text(v) for f, v in zip(fields, replies[-1], strict=True) if v is not None}
    return Recorded(counters, assigned, as_text_dict(replies[-2]), units)


@dataclass(frozen=True)
class ShadowRecorded:
    pairs: dict[tuple[str, str], dict[str, str]]
    """(primary, shadow) -> its counter hash."""
    disagreements: list[dict[str, str]]
    """The most recent disagreements, newest first."""
    units: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    """(primary, shadow) -> its per-user sums (sticky experiments), by field."""


SHADOW_UNIT_FIELDS = unit_sum_fields("pair", "s_") + unit_sum_fields("pair", "d_")


async def read_shadow(client: RedisClient, experiment: str) -> ShadowRecorded:
    members = sorted(text(m) for m in await client.smembers(keys.shadow_pairs(experiment)))
    pairs = [tuple(m.split("|", 1)) for m in members if "|" in m]
    async with client.pipeline(transaction=True) as pipe:
        for primary, shadow in pairs:
            pipe.hgetall(keys.shadow_counters(experiment, primary, shadow))
        for primary, shadow in pairs:
            pipe.hmget(keys.shadow_units(experiment, primary, shadow), SHADOW_UNIT_FIELDS)
        pipe.xrevrange(keys.disagreements(experiment), count=RECENT_DISAGREEMENTS)
        replies = await pipe.execute()
    counters = {(p, s): as_text_dict(reply) for (p, s), reply in zip(pairs, replies, strict=False)}
    units = {
        (p, s): {f: text(v) for f, v in zip(SHADOW_UNIT_FIELDS, reply, strict=True) if v}
        for (p, s), reply in zip(pairs, replies[len(pairs) :], strict=False)
    }
    recent = [as_text_dict(fields) for _, fields in replies[-1]]
    return ShadowRecorded(counters, recent, units)


async def read_history(client: RedisClient, hash_keys: list[str]) -> list[dict[str, str]]:
    """The history bucket hashes of one range (one experiment's keys), in order."""
    async with client.pipeline(transaction=False) as pipe:
        for key in hash_keys:
            pipe.hgetall(key)
        replies = await pipe.execute()
    return [as_text_dict(reply) for reply in replies]

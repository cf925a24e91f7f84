"""The rollout's only Redis I/O: state, history, the driver lease, and each window's counters.

Every script touches one experiment's keys only. A driver's writes carry its lease value and
fencing token: a driver that lost its lease (a pause, a partition) can no longer write, and a
write decided on a state that moved on since (``seq``) is refused, so each transition happens
once whichever replica decided it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from router.reports.units import unit_sum_fields
from router.rollout.state import RolloutState
from router.storage import keys
from router.storage.client import RedisClient
from router.storage.codec import as_text_dict, dumps, text
from router.storage.scripts import (
    ACQUIRE_LEASE_LUA,
    FOLD_REWARDS_LUA,
    RELEASE_LEASE_LUA,
    TRANSITION_LUA,
)

OK = "ok"
FOLD_KEYS_PER_CALL = 100
"""Slots folded per script call (a long-unfolded window takes a few calls, none of them long)."""


@dataclass(frozen=True)
class Lease:
    experiment: str
    owner: str
    token: int

    @property
    def value(self) -> str:
        return f"{self.owner}|{self.token}"


@dataclass(frozen=True)
class Recorded:
    """What one look reads: the window's counters, shadow pairs, assignments by config."""

    window: dict[str, str]
    shadow: dict[str, str]
    assigned: dict[str, int]


def encode_fields(fields: Mapping[str, object]) -> str:
    flat: list[str] = []
    for name, value in fields.items():
        flat += [name, value if isinstance(value, str) else dumps(value)]
    return dumps(flat)


class RolloutStore:
    def __init__(self, redis: RedisClient, history_maxlen: int, looks_maxlen: int = 10_000) -> None:
        self.redis = redis
        self.history_maxlen = history_maxlen
        self.looks_maxlen = looks_maxlen
        self._acquire = redis.register_script(ACQUIRE_LEASE_LUA)
        self._release = redis.register_script(RELEASE_LEASE_LUA)
        self._transition = redis.register_script(TRANSITION_LUA)
        self._fold = redis.register_script(FOLD_REWARDS_LUA)

    async def states(self, names: Iterable[str]) -> dict[str, RolloutState]:
        ordered = list(names)
        if not ordered:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in ordered:
                pipe.hgetall(keys.rollout(name))
            replies = await pipe.execute()
        return {
            n: RolloutState.from_hash(as_text_dict(r))
            for n, r in zip(ordered, replies, strict=True)
        }

    async def state(self, name: str) -> RolloutState:
        return RolloutState.from_hash(as_text_dict(await self.redis.hgetall(keys.rollout(name))))

    async def recorded(
        self,
        name: str,
        window: int | None,
        shadow_pair: tuple[str, str] | None,
        config_version: str | None,
    ) -> Recorded:
        async with self.redis.pipeline(transaction=False) as pipe:
            if window:
                pipe.hgetall(keys.rollout_window(name, window))
            if shadow_pair is not None:
                pipe.hgetall(keys.shadow_counters(name, *shadow_pair))
            if config_version is not None:
                pipe.hgetall(keys.assigned(name, config_version))
            replies = list(await pipe.execute())
        window_raw = as_text_dict(replies.pop(0)) if window else {}
        shadow = as_text_dict(replies.pop(0)) if shadow_pair is not None else {}
        assigned = (
            {k: int(v) for k, v in as_text_dict(replies.pop(0)).items()}
            if config_version is not None
            else {}
        )
        return Recorded(window_raw, shadow, assigned)

    async def fold_rewards(
        self, name: str, window: int, first_slot: int, last_slot: int, max_users: int
    ) -> None:
        """Fold held feedback on requests of slots up to ``last_slot`` into the window's
        per-user reward sums (slots before ``first_slot`` hold nothing of this window)."""
        units = keys.rollout_units(name, window)
        raw = await self.redis.hget(units, keys.WINDOW_MATURED)
        matured = None if raw is None else text(raw)
        start = max(first_slot, int(matured) + 1 if matured else first_slot)
        slots = list(range(start, last_slot + 1))
        if not slots and matured is not None:
            return
        for at in range(0, max(1, len(slots)), FOLD_KEYS_PER_CALL):
            chunk = slots[at : at + FOLD_KEYS_PER_CALL]
            upto = chunk[-1] if chunk else last_slot
            staged = [keys.rollout_staged(name, window, slot) for slot in chunk]
            await self._fold(keys=[units, *staged], args=[upto, max_users])

    async def config_users(
        self, name: str, config_version: str, variants: Iterable[str]
    ) -> dict[str, int]:
        """Distinct users assigned per variant under one configuration (sticky experiments)."""
        names = list(variants)
        fields = [keys.window_field(v, keys.WINDOW_USERS + "k") for v in names]
        values = await self.redis.hmget(keys.config_units(name, config_version), fields)
        return {v: int(float(text(x))) for v, x in zip(names, values, strict=True) if x}

    async def unit_sums(self, name: str, window: int, variants: Iterable[str]) -> dict[str, str]:
        """The window's per-user sums (and watermark), as fields of the window hash."""
        fields = [keys.WINDOW_MATURED]
        for variant in variants:
            fields.append(keys.window_field(variant, keys.WINDOW_UNITS_FULL))
            fields.append(keys.window_field(variant, keys.WINDOW_ORPHAN_FEEDBACK))
            for prefix in (keys.WINDOW_USERS, keys.WINDOW_REWARD_USERS):
                fields += unit_sum_fields(variant, prefix)
        values = await self.redis.hmget(keys.rollout_units(name, window), fields)
        return {f: str(text(v)) for f, v in zip(fields, values, strict=True) if v is not None}

    # --- the driver lease -----------------------------------------------------------------
    async def acquire(self, name: str, owner: str, ttl: float) -> Lease | None:
        token = await self._acquire(
            keys=[keys.rollout_lease(name), keys.rollout_fence(name)],
            args=[owner, int(ttl * 1000)],
        )
        return Lease(name, owner, int(token)) if int(token) else None

    async def release(self, lease: Lease) -> None:
        await self._release(keys=[keys.rollout_lease(lease.experiment)], args=[lease.value])

    # --- writes -----------------------------------------------------------------------------
    async def write(
        self,
        name: str,
        lease: Lease | None,
        expected_seq: int,
        fields: Mapping[str, object],
        history: Mapping[str, object] | None,
    ) -> str:
        """A transition (with a ``history`` entry, ``seq`` + 1) or a gate update (without).

        ``lease`` None: an operator's change, which needs no lease but the same ``seq``.
        """
        reply = await self._transition(
            keys=[keys.rollout(name), keys.rollout_history(name), keys.rollout_lease(name)],
            args=[
                lease.value if lease else "",
                str(lease.token) if lease else "",
                str(expected_seq),
                self.history_maxlen,
                encode_fields(fields),
                "" if history is None else encode_fields(history),
            ],
        )
        return text(reply)

    async def history(self, name: str, limit: int = 50) -> list[dict[str, Any]]:
        """Transitions, oldest first (the newest ``limit``)."""
        entries = await self.redis.xrevrange(keys.rollout_history(name), "+", "-", count=limit)
        out = []
        for entry_id, fields in reversed(list(entries or [])):
            item: dict[str, Any] = {"id": text(entry_id or "")}
            for key, value in as_text_dict(fields or {}).items():
                item[key] = _maybe_json(value)
            out.append(item)
        return out

    async def add_look(self, name: str, look: Mapping[str, object]) -> None:
        """Keep one look's gate numbers for the timeline (capped; a lost one is a gap)."""
        fields = {k: v if isinstance(v, str) else dumps(v) for k, v in look.items()}
        await self.redis.xadd(
            keys.rollout_looks(name),
            fields,  # type: ignore[arg-type]
            maxlen=self.looks_maxlen,
            approximate=True,
        )

    async def looks(self, name: str, since: float, limit: int = 2000) -> list[dict[str, Any]]:
        """Gate looks from ``since`` (epoch seconds) on, oldest first (the newest ``limit``)."""
        start = f"{max(0, int(since * 1000))}-0"
        entries = await self.redis.xrevrange(keys.rollout_looks(name), "+", start, count=limit)
        out = []
        for _, fields in reversed(list(entries or [])):
            out.append({k: _maybe_json(v) for k, v in as_text_dict(fields or {}).items()})
        return out

    async def first_sight(self, name: str, alert: str, seen_at: float, ttl: int) -> bool:
        """True the first time ``alert`` is acted on for ``name`` (Alertmanager repeats)."""
        key = keys.alerts_seen(name)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, alert, repr(seen_at))
            pipe.expire(key, ttl)
            first, _ = await pipe.execute()
        return bool(first)


def _maybe_json(value: str) -> Any:
    if value[:1] in ("{", "[", '"') or value in ("true", "false", "null"):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value

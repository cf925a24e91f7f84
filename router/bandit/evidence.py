"""Bandit evidence in Redis: what one feedback adds, how a replica reads it back, and an
in-process store of the same interface for simulations.

Per experiment one hash holds, per arm, fractional successes ``s``, failures ``f`` and the
count ``n`` of rewards (``router.storage.keys``); the feedback Lua script adds to it atomically and
exactly once per request id. The prior is not stored: Beta(prior_alpha + s, prior_beta + f).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from router.routing.policies.base import ArmStats
from router.storage import keys
from router.storage.client import RedisClient
from router.storage.codec import as_text_dict, text
from router.storage.scripts import Command

StreamEntry = tuple[str, dict[str, str]]
"""A stream entry: its id and fields."""


@dataclass(frozen=True, slots=True)
class BanditTarget:
    """What the feedback path needs to know about a bandit experiment."""

    arms: frozenset[str]
    frozen_default: bool
    """The frozen flag's default; an override in Redis wins (read inside the script)."""


def evidence_commands(experiment: str, arm: str, reward: float, rewards: int = 1) -> list[Command]:
    """Rewards in [0, 1] for ``arm``, summing to ``reward``: alpha += reward,
    beta += rewards - reward, count += rewards (the feedback script adds one at a time)."""
    key = keys.bandit(experiment)
    failures = float(rewards) - reward
    return [
        ("HINCRBYFLOAT", key, (keys.bandit_field(arm, keys.BANDIT_SUCCESS), repr(reward))),
        ("HINCRBYFLOAT", key, (keys.bandit_field(arm, keys.BANDIT_FAILURE), repr(failures))),
        ("HINCRBY", key, (keys.bandit_field(arm, keys.BANDIT_REWARDS), str(rewards))),
    ]


@dataclass(frozen=True, slots=True)
class Evidence:
    successes: float = 0.0
    failures: float = 0.0
    rewards: int = 0


def parse_evidence(raw: Mapping[str, str]) -> dict[str, Evidence]:
    """Arm -> evidence from a bandit hash (fields the layout does not know are ignored)."""
    parts: dict[str, dict[str, str]] = {}
    for name, value in raw.items():
        arm, _, part = name.rpartition(":")
        if arm:
            parts.setdefault(arm, {})[part] = value
    return {
        arm: Evidence(
            float(p.get(keys.BANDIT_SUCCESS, "0")),
            float(p.get(keys.BANDIT_FAILURE, "0")),
            int(p.get(keys.BANDIT_REWARDS, "0")),
        )
        for arm, p in parts.items()
    }


def arm_stats(
    evidence: Mapping[str, Evidence], arms: Sequence[str], prior: tuple[float, float]
) -> dict[str, ArmStats]:
    """Posteriors of ``arms`` (prior alone without evidence), then of any arm only Redis knows."""
    names = list(arms) + sorted(set(evidence) - set(arms))
    empty = Evidence()
    return {
        arm: ArmStats(
            prior[0] + evidence.get(arm, empty).successes,
            prior[1] + evidence.get(arm, empty).failures,
            evidence.get(arm, empty).rewards,
        )
        for arm in names
    }


@dataclass
class StoreRead:
    evidence: dict[str, dict[str, str]] = field(default_factory=dict)
    """Experiment -> its raw bandit hash."""
    sticky: dict[str, list[StreamEntry]] = field(default_factory=dict)
    """Experiment -> sticky assignments after the id asked for, oldest first."""


class BanditStore(Protocol):
    async def read(
        self, experiments: Sequence[str], sticky_after: Mapping[str, str], count: int
    ) -> StoreRead:
        """Every experiment's evidence, and up to ``count`` sticky entries of those named in
        ``sticky_after`` whose ids follow the given one (``(id`` exclusive or ``id`` inclusive)."""
        ...


class RedisBanditStore:
    """One pipelined round trip per refresh, whatever the number of experiments."""

    def __init__(self, client: RedisClient) -> None:
        self.redis = client

    async def read(
        self, experiments: Sequence[str], sticky_after: Mapping[str, str], count: int
    ) -> StoreRead:
        sticky = [e for e in experiments if e in sticky_after]
        async with self.redis.pipeline(transaction=False) as pipe:
            for experiment in experiments:
                pipe.hgetall(keys.bandit(experiment))
            for experiment in sticky:
                pipe.xrange(keys.bandit_sticky(experiment), sticky_after[experiment], "+", count)
            replies = await pipe.execute()
        result = StoreRead()
        for experiment, reply in zip(experiments, replies, strict=False):
            result.evidence[experiment] = as_text_dict(reply)
        for experiment, entries in zip(sticky, replies[len(experiments) :], strict=True):
            result.sticky[experiment] = [(text(i), as_text_dict(f)) for i, f in entries]
        return result

    async def close(self) -> None:
        await self.redis.aclose()


class MemoryBanditStore:
    """The store in process memory: the benchmark's stand-in for Redis, same key layout.

    ``apply`` runs the same commands the feedback script runs (the subset they use).
    """

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = {}
        self.streams: dict[str, list[StreamEntry]] = {}
        self._seq = 0

    def apply(self, commands: Sequence[Command]) -> None:
        for name, key, args in commands:
            if name == "HINCRBYFLOAT":
                h = self.hashes.setdefault(key, {})
                h[args[0]] = repr(float(h.get(args[0], "0")) + float(args[1]))
            elif name == "HINCRBY":
                h = self.hashes.setdefault(key, {})
                h[args[0]] = str(int(h.get(args[0], "0")) + int(args[1]))
            elif name == "XADD":
                self._seq += 1
                flat = args[args.index("*") + 1 :]
                fields = dict(zip(flat[::2], flat[1::2], strict=True))
                self.streams.setdefault(key, []).append((f"0-{self._seq}", fields))
            else:
                raise ValueError(f"MemoryBanditStore does not run {name}")

    async def read(
        self, experiments: Sequence[str], sticky_after: Mapping[str, str], count: int
    ) -> StoreRead:
        result = StoreRead()
        for experiment in experiments:
            result.evidence[experiment] = dict(self.hashes.get(keys.bandit(experiment), {}))
            if experiment in sticky_after:
                after = sticky_after[experiment]
                exclusive = after.startswith("(")
                floor = _id_key(after.lstrip("("))
                entries = [
                    (i, f)
                    for i, f in self.streams.get(keys.bandit_sticky(experiment), [])
                    if (_id_key(i) > floor if exclusive else _id_key(i) >= floor)
                ]
                result.sticky[experiment] = entries[:count]
        return result


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)

"""Drift verdicts in Redis: ``turnout drift`` writes the last run, gateways read it.

One hash per experiment (one key, so one Cluster slot), replaced whole by one script: a reader
sees the last run or the one before, never half of each. Verdicts are plain data, so the
gateway's gauges, its ``GET /experiments/{name}/drift`` and a console read the same thing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from router.storage import keys
from router.storage.client import RedisClient
from router.storage.codec import as_text_dict
from router.storage.scripts import REPLACE_HASH_LUA

GAUGE_VERDICTS = {"drift": 1.0, "ok": 0.0}
"""Verdicts exported as ``turnout_drift``; ``insufficient`` and ``skipped`` are not a 0."""


@dataclass(frozen=True)
class Verdict:
    version: str
    check: str
    verdict: str
    reason: str
    data: dict[str, Any] = field(default_factory=dict)
    """The check's numbers (distances, rates, thresholds)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "check": self.check,
            "verdict": self.verdict,
            "reason": self.reason,
            **self.data,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Verdict:
        data = {k: v for k, v in raw.items() if k not in ("version", "check", "verdict", "reason")}
        return cls(
            str(raw["version"]),
            str(raw["check"]),
            str(raw["verdict"]),
            str(raw.get("reason", "")),
            data,
        )


@dataclass(frozen=True)
class DriftState:
    """The last drift run of one experiment."""

    run: dict[str, Any]
    """When, over which windows, with which thresholds, the HTML report's path, drift or not."""
    verdicts: list[Verdict]

    def as_dict(self) -> dict[str, Any]:
        return {**self.run, "verdicts": [v.as_dict() for v in self.verdicts]}


async def write_state(client: RedisClient, experiment: str, state: DriftState) -> None:
    fields = [keys.DRIFT_RUN, orjson.dumps(state.run).decode()]
    for verdict in state.verdicts:
        fields += [
            keys.drift_field(verdict.version, verdict.check),
            orjson.dumps(verdict.as_dict()).decode(),
        ]
    script = client.register_script(REPLACE_HASH_LUA)
    await script(keys=[keys.drift(experiment)], args=fields)


def parse_state(raw: Mapping[str, str]) -> DriftState | None:
    """A drift hash as read; None when there is none (or it is unreadable)."""
    if keys.DRIFT_RUN not in raw:
        return None
    try:
        run = orjson.loads(raw[keys.DRIFT_RUN])
        verdicts = [
            Verdict.from_dict(orjson.loads(value))
            for name, value in sorted(raw.items())
            if name != keys.DRIFT_RUN
        ]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return DriftState(run if isinstance(run, dict) else {}, verdicts)


async def read_state(client: RedisClient, experiment: str) -> DriftState | None:
    return parse_state(as_text_dict(await client.hgetall(keys.drift(experiment))))


async def read_states(client: RedisClient, experiments: Iterable[str]) -> dict[str, DriftState]:
    """The last run of each experiment that has one (one round trip per experiment's slot)."""
    names = sorted(experiments)
    states = {}
    for name in names:
        state = await read_state(client, name)
        if state is not None:
            states[name] = state
    return states

"""A gateway's view of the drift verdicts: reread from Redis now and then, exported as gauges.

``turnout_drift{experiment,version,check}`` is 1 for drift and 0 for none (a check that could
not say, ``insufficient`` or ``skipped``, exports nothing); ``turnout_drift_checked_timestamp_
seconds{experiment}`` says how old the verdicts are. The last run of each experiment is also kept
as plain data for ``GET /experiments/{name}/drift`` (and a console).
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from router.core import logs
from router.core.metrics import GatewayMetrics
from router.drift.store import GAUGE_VERDICTS, DriftState, read_state, read_states
from router.routing.table import RouteTable
from router.storage.client import RedisClient

log = logging.getLogger("turnout.drift")


class DriftVerdicts:
    def __init__(
        self,
        client: RedisClient | None,
        table: RouteTable,
        metrics: GatewayMetrics,
        interval: float,
    ) -> None:
        self.client = client
        self.table = table
        self.metrics = metrics
        self.interval = interval
        self.states: dict[str, DriftState] = {}

    async def latest(self, experiment: str) -> DriftState | None:
        """The last run, read now (the copy from the last refresh while Redis does not answer)."""
        if self.client is not None:
            try:
                state = await read_state(self.client, experiment)
            except (RedisError, OSError):
                return self.states.get(experiment)
            if state is not None:
                self.states[experiment] = state
            return state
        return self.states.get(experiment)

    async def refresh(self) -> None:
        if self.client is None:
            return
        states = await read_states(self.client, self.table.snapshot.routes)
        self.states = states
        self.metrics.drift.clear()
        self.metrics.drift_checked.clear()
        for name, state in states.items():
            checked = state.run.get("checked_at")
            if isinstance(checked, int | float):
                self.metrics.drift_checked.labels(name).set(checked)
            for verdict in state.verdicts:
                value = GAUGE_VERDICTS.get(verdict.verdict)
                if value is not None:
                    self.metrics.drift.labels(name, verdict.version, verdict.check).set(value)

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except (RedisError, OSError) as exc:  # the last verdicts keep being exported
                logs.event(log, "drift_refresh_failed", logging.WARNING, reason=str(exc))
            await asyncio.sleep(self.interval)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()

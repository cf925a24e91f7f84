"""What ``turnout drift`` and ``turnout retrain`` read: the experiment, its captured records (or,
without capture, the recorder's streams in Redis), feedback labels, and model cards.

Both commands run beside the data (the state folder and Redis), not through a gateway.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from redis.exceptions import RedisError

from router.capture.reader import ReadStats, read_records
from router.cli.common import fail
from router.config.experiments import NAME, Experiment, parse_duration
from router.config.resolve import load_directory
from router.core.settings import Settings
from router.core.state import StateFolder
from router.drift import reads
from router.storage.client import RedisClient, connect, redis_configured

T = TypeVar("T")


def window_seconds(value: str, option: str) -> float:
    """A duration option (``24h``, ``7d``); exit 2 naming the option when it does not parse."""
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise fail(f"{option}: {exc}", 2) from None
    if seconds <= 0:
        raise fail(f"{option}: must be a positive duration, got {value!r}", 2)
    return seconds


def _instant(text: str, end: bool) -> float:
    """An ISO date or date-time, UTC unless it says otherwise; a bare end date includes its day."""
    text = text.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        day = date.fromisoformat(text) + (timedelta(days=1) if end else timedelta(0))
        return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def date_range(value: str, option: str) -> tuple[float, float]:
    """``DATE..DATE`` (ISO dates or date-times) -> [start, end) in Unix seconds; exit 2 if not."""
    parts = value.split("..")
    try:
        if len(parts) != 2:
            raise ValueError("expected START..END")
        start, end = _instant(parts[0], False), _instant(parts[1], True)
    except ValueError as exc:
        raise fail(
            f"{option}: {value!r} is not training or DATE..DATE "
            f"(e.g. 2026-11-01..2026-11-07; {exc})",
            2,
        ) from None
    if end <= start:
        raise fail(f"{option}: {value!r} ends before it starts", 2)
    return start, end


def experiment_named(settings: Settings, name: str) -> Experiment:
    """The experiment as the gateway would load it; exit 2 if there is none of that name."""
    if not re.match(NAME, name):
        raise fail(f"{name!r} is not an experiment name (expected {NAME})", 2)
    report = load_directory(
        settings.experiments_dir,
        settings.allowed_hosts,
        settings.experiment_max_bytes,
        StateFolder(settings.state_dir),
    )
    if name in report.experiments:
        return report.experiments[name].experiment
    known = ", ".join(sorted(report.experiments)) or "none"
    refused = ", ".join(sorted(p.name for p in report.errors))
    also = f"; refused files: {refused} (turnout validate)" if refused else ""
    raise fail(
        f"unknown experiment {name!r} in {settings.experiments_dir} (known: {known}{also})", 2
    )


def redis_client(settings: Settings) -> RedisClient:
    """The gateways' Redis (URL, Sentinel or Cluster), else the local stack's embedded one."""
    if redis_configured(settings):
        return connect(settings, "turnout-cli")
    url = f"redis://127.0.0.1:{settings.redis_port}/0"
    return connect(settings.model_copy(update={"redis_url": url}), "turnout-cli")


def on_redis(settings: Settings, what: str, job: Callable[[RedisClient], Awaitable[T]]) -> T:
    """Run ``job`` with a Redis client; exit 1 saying ``what`` could not be done if Redis fails."""

    async def main() -> T:
        client = redis_client(settings)
        try:
            return await job(client)
        finally:
            await client.aclose()

    try:
        return asyncio.run(main())
    except (RedisError, OSError) as exc:
        raise fail(f"Redis is unreachable, {what}: {exc}") from None


@dataclass
class Records:
    """One window's data of an experiment, in the shape of captured records."""

    outcomes: list[dict[str, Any]] = field(default_factory=list)
    comparisons: list[dict[str, Any]] = field(default_factory=list)

    def inputs(self) -> list[dict[str, Any]]:
        return [r["input"] for r in self.outcomes if isinstance(r.get("input"), dict)]

    def split(self, at: float) -> tuple[Records, Records]:
        """(records at or after ``at``, records before it)."""
        later, earlier = Records(), Records()
        for kind in ("outcomes", "comparisons"):
            for record in getattr(self, kind):
                getattr(later if record["ts"] >= at else earlier, kind).append(record)
        return later, earlier


@dataclass
class Source:
    """Where an experiment's records come from, and what reading them skipped."""

    kind: str
    """``capture`` (files under the state folder) or ``redis`` (the recorder's streams)."""
    stats: ReadStats = field(default_factory=ReadStats)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.stats.as_dict()}


def read_window(
    settings: Settings, experiment: Experiment, since: float, until: float, source: Source
) -> Records:
    """Captured records when the experiment captures, else the recorder's streams."""
    records = Records()
    if source.kind == "capture":
        for record in read_records(
            settings.capture_root(), experiment.name, since, until, source.stats
        ):
            (records.outcomes if record["kind"] == "outcome" else records.comparisons).append(
                record
            )
        return records

    async def job(client: RedisClient) -> Records:
        outcomes = await reads.read_outcomes(client, experiment.name, since, until)
        pairs = await reads.read_comparisons(client, experiment.name, since, until)
        for pair in pairs:  # the streams name variants; versions come from the config in force
            for side in ("primary", "shadow"):
                variant = pair.get(side)
                pair[f"{side}_version"] = (
                    experiment.version_of(variant) if variant in experiment.variants else variant
                )
        return Records(outcomes, pairs)

    return on_redis(settings, "the recorded traffic cannot be read", job)


def source_for(experiment: Experiment) -> Source:
    return Source("capture" if experiment.capture is not None else "redis")


def card_of(models_dir: Path, model: str, version: str) -> dict[str, Any] | None:
    from model_workers.registry import read_card
    from router.core.errors import RegistryError

    try:
        return read_card(models_dir, model, version)
    except RegistryError:
        return None

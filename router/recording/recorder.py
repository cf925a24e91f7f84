"""Outcome recording: a bounded in-process buffer, flushed to Redis by a background task.

``record()`` only appends to memory, so a request never waits on Redis. The flusher writes a
batch in two steps: one pipeline of request locators (``SET NX``: the key that leads from a
request id to its experiment), then one Lua call per experiment in the batch, all or nothing,
with that experiment's counters summed; each event is guarded by its request's attribution hash,
so a retried batch never counts twice. Every key of one call is in one experiment's slot, so the
same calls run on Redis Cluster. While Redis is down, events wait (up to
``recording_buffer_size``); past the bound the oldest waiting event is dropped and counted. At
every moment ``produced = written + buffered + dropped`` on ``/metrics``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Protocol

from redis.exceptions import RedisError

from router.core import logs
from router.core.errors import Unavailable
from router.core.metrics import GatewayMetrics
from router.core.settings import Settings
from router.recording.buffer import OutcomeBuffer, Pending
from router.recording.events import (
    HistoryRetention,
    Outcome,
    RecordedEvent,
    ShadowComparison,
    Tally,
    UnitBounds,
)
from router.storage import keys
from router.storage.client import RedisClient, connect, is_transient, redis_configured
from router.storage.codec import dumps, flatten
from router.storage.retry import drain_within, stop, until_done
from router.storage.scripts import WRITE_EVENTS_LUA, Command, KeyTable

log = logging.getLogger("turnout.recording")


class Recorder(Protocol):
    def record(self, outcome: Outcome) -> None:
        """Accept an outcome without blocking; it is written later."""

    def record_shadow(self, comparison: ShadowComparison) -> None:
        """Accept a shadow comparison without blocking; it is written later."""


class NullRecorder:
    def record(self, outcome: Outcome) -> None:
        return None

    def record_shadow(self, comparison: ShadowComparison) -> None:
        return None


@dataclass
class EncodedBatch:
    """One experiment's part of a batch, as one call of the write script."""

    keys: list[str]
    payload: str
    """ARGV[1] of the write script."""
    sent: list[Pending]
    """The events in the payload, in order."""
    repeated: int
    """Events whose guard already occurs earlier in the batch (not sent)."""
    unencodable: int


def by_experiment(batch: list[Pending]) -> dict[str, list[Pending]]:
    """A batch split by experiment (one slot each), every part in the batch's order."""
    parts: dict[str, list[Pending]] = {}
    for item in batch:
        parts.setdefault(item.event.experiment, []).append(item)
    return parts


def encode_batch(
    batch: list[Pending],
    stream_maxlen: int,
    attribution_ttl: int,
    history: HistoryRetention | None = None,
    units: UnitBounds = UnitBounds(),
) -> EncodedBatch:
    """The write script's KEYS and payload for events of one experiment: one guard + its fields
    + stream entries per event, and the counter increments (history buckets included) summed."""
    if len({item.event.experiment for item in batch}) > 1:
        raise ValueError("one write script call holds one experiment's events (one slot)")
    table = KeyTable()
    tally = Tally(history, units)
    events: list[dict[str, object]] = []
    streams: list[Command] = []
    sent: list[Pending] = []
    guards: set[str] = set()
    repeated = unencodable = 0
    for item in batch:
        event = item.event
        guard = event.guard_key()
        if guard in guards:
            repeated += 1
            continue
        try:
            fields = flatten(event.guard_fields())
            entries = event.stream_commands(stream_maxlen)
        except (TypeError, ValueError) as exc:  # a label orjson cannot encode
            unencodable += 1
            logs.event(log, "recording_unencodable", logging.ERROR, reason=str(exc))
            continue
        guards.add(guard)
        event.count(tally)
        streams.extend(entries)
        sent.append(item)
        events.append({"g": table.ref(guard), "t": item.token, "a": fields})
    payload = {
        "e": events,
        "x": str(attribution_ttl),
        "c": table.encode([*streams, *tally.commands()]),
    }
    return EncodedBatch(table.keys, dumps(payload), sent, repeated, unencodable)


Settled = dict[str, int]
"""Events of a batch by result: ``written`` or a drop reason."""


class RedisRecorder:
    """A ``Recorder`` that buffers outcomes and writes them to Redis in the background."""

    def __init__(
        self,
        settings: Settings,
        metrics: GatewayMetrics,
        client: RedisClient | None = None,
    ) -> None:
        self.redis = client or connect(settings)
        self.settings = settings
        self.metrics = metrics
        self.buffer = OutcomeBuffer(settings.recording_buffer_size)
        self.paused = False
        self.history = history_retention(settings)
        self._script = self.redis.register_script(WRITE_EVENTS_LUA)
        self._registered: set[str] = set()
        """Experiments this replica has added to ``keys.experiments()`` already."""
        self._replica = uuid.uuid4().hex[:12]
        self._seq = 0
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._healthy = True

    # --- the request path: memory only --------------------------------------------------
    def record(self, outcome: RecordedEvent) -> None:
        self._seq += 1
        dropped = self.buffer.append(Pending(f"{self._replica}:{self._seq}", outcome))
        self.metrics.events_produced.inc()
        if dropped is not None:
            self.metrics.events_dropped.labels("buffer_full").inc()
        self.metrics.events_buffered.set(len(self.buffer))
        if len(self.buffer) - self.buffer.in_flight >= self.settings.recording_batch_size:
            self._wake.set()

    def record_shadow(self, comparison: ShadowComparison) -> None:
        """Shadow comparisons take the same buffered, idempotent path as outcomes."""
        self.record(comparison)

    # --- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="turnout-recording-flusher")

    def pause(self) -> None:
        """Stop background flushing (events keep buffering); for tests and drills."""
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self._wake.set()

    async def close(self) -> None:
        """Stop the flusher, flush what is left within the shutdown timeout, count the rest."""
        if self._task is not None:
            await stop(self._task)
            self._task = None
        await drain_within(
            self.settings.recording_shutdown_timeout,
            lambda: bool(len(self.buffer)),
            self.write_batch,
        )
        lost = self.buffer.clear()
        if lost:
            self.metrics.events_dropped.labels("shutdown").inc(lost)
            self.metrics.events_buffered.set(len(self.buffer))
            logs.event(log, "recording_lost_at_shutdown", logging.ERROR, events=lost)
        await self.redis.aclose()

    # --- flushing ---------------------------------------------------------------------
    async def flush(self) -> bool:
        """Write everything buffered now; False if Redis failed on the way."""
        while len(self.buffer):
            if not await self.write_batch():
                return False
        return True

    async def flush_through(self, request_id: str) -> None:
        """Make sure this replica's buffered event for ``request_id`` (if any) is in Redis."""
        timeout = self.settings.feedback_flush_timeout
        try:
            async with asyncio.timeout(timeout):
                while self.buffer.holds(request_id):
                    if not await self.write_batch():
                        raise Unavailable(
                            "Redis is unreachable; the request's outcome is still buffered",
                            code="redis_unavailable",
                        )
        except TimeoutError:
            raise Unavailable(
                f"the request's outcome could not be written within {timeout:g}s",
                code="redis_unavailable",
            ) from None

    async def write_batch(self) -> bool:
        """Write one batch. True when it left the buffer, False when (some of) it must be
        retried: the part Redis could not take now goes back to the front of the buffer."""
        async with self._lock:
            batch = self.buffer.take(self.settings.recording_batch_size)
            if not batch:
                return True
            started = time.perf_counter()
            try:
                done, retry, failure = await self._apply(batch)
            except RedisError as exc:
                if is_transient(exc):
                    self.buffer.restore()
                    self._set_health(False, exc)
                    self.metrics.events_buffered.set(len(self.buffer))
                    return False
                done, retry, failure = {"redis_refused": len(batch)}, [], None
                self._refused(len(batch), exc)
            except BaseException:
                self.buffer.restore()
                raise
            self.buffer.commit(keep=retry)
            self.metrics.events_written.inc(done.pop("written", 0))
            for reason, count in done.items():
                if count:
                    self.metrics.events_dropped.labels(reason).inc(count)
            self.metrics.events_buffered.set(len(self.buffer))
            if failure is not None:
                self._set_health(False, failure)
                return False
            if "redis_refused" not in done:
                self.metrics.flush_seconds.observe(time.perf_counter() - started)
                self._set_health(True)
            return True

    def _refused(self, events: int, exc: Exception) -> None:
        logs.event(log, "recording_batch_refused", logging.ERROR, events=events, reason=str(exc))

    async def _apply(
        self, batch: list[Pending]
    ) -> tuple[Settled, list[Pending], RedisError | None]:
        """Locators first, then one script call per experiment, side by side.

        Returns what was settled, the events to retry (an experiment whose slot did not
        answer) and the transient error that caused it. A locator that already names another
        experiment means the request id was used there: that event is a duplicate.
        """
        settled: Settled = {"written": 0, "duplicate_request_id": 0, "unencodable": 0}
        clashes = await self._locate(batch)
        settled["duplicate_request_id"] += len(clashes)
        parts = by_experiment([item for item in batch if id(item) not in clashes])
        replies = await asyncio.gather(
            *(self._apply_one(items) for items in parts.values()), return_exceptions=True
        )
        retry: list[Pending] = []
        failure: RedisError | None = None
        for items, reply in zip(parts.values(), replies, strict=True):
            if isinstance(reply, RedisError):
                if is_transient(reply):
                    retry += items
                    failure = reply
                else:
                    settled["redis_refused"] = settled.get("redis_refused", 0) + len(items)
                    self._refused(len(items), reply)
            elif isinstance(reply, BaseException):
                raise reply
            else:
                for reason, count in reply.items():
                    settled[reason] += count
        return settled, retry, failure

    async def _locate(self, batch: list[Pending]) -> set[int]:
        """Write each request's locator (``SET NX`` with the attribution TTL) and register new
        experiments; returns the ids of events whose request id belongs to another experiment
        (a locator written earlier, or earlier in this batch, names another one)."""
        ttl = self.settings.attribution_ttl
        owner: dict[str, str] = {}
        new = {item.event.experiment for item in batch} - self._registered
        async with self.redis.pipeline(transaction=False) as pipe:
            for item in batch:
                key = item.event.locator()
                if key is not None and key not in owner:
                    owner[key] = item.event.experiment
                    pipe.set(key, item.event.experiment, nx=True, ex=ttl)
            if new:
                pipe.sadd(keys.experiments(), *sorted(new))
            replies = await pipe.execute()
        self._registered |= new
        taken = [key for key, ok in zip(owner, replies, strict=False) if not ok]
        if taken:  # written before: by a retry of this batch (same experiment) or another use
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in taken:
                    pipe.get(key)
                found = await pipe.execute()
            owner.update({k: v for k, v in zip(taken, found, strict=True) if v is not None})
        return {
            id(item)
            for item in batch
            if (key := item.event.locator()) is not None and owner[key] != item.event.experiment
        }

    async def _apply_one(self, batch: list[Pending]) -> Settled:
        """Run the write script for one experiment's events until every event is written or
        known to be there already.

        The script writes its events all or nothing. When some request ids already have a
        guard (a retry of a batch that did reach Redis, or an id used twice), it writes nothing
        and says which; those are settled and the rest is sent again, so this loop shrinks.
        """
        settled = {"written": 0, "duplicate_request_id": 0, "unencodable": 0}
        while batch:
            encoded = encode_batch(
                batch,
                self.settings.recording_stream_maxlen,
                self.settings.attribution_ttl,
                self.history,
                unit_bounds(self.settings),
            )
            settled["duplicate_request_id"] += encoded.repeated
            settled["unencodable"] += encoded.unencodable
            if not encoded.sent:
                break
            reply = await self._script(keys=encoded.keys, args=[encoded.payload])
            applied, statuses = reply[0], reply[1:]
            if applied:
                settled["written"] += len(encoded.sent)
                break
            batch = []
            for item, status in zip(encoded.sent, statuses, strict=True):
                if status == 1:
                    batch.append(item)
                elif status == 2:
                    settled["written"] += 1
                else:
                    settled["duplicate_request_id"] += 1
        return settled

    async def _run(self) -> None:
        interval = self.settings.recording_flush_interval
        while True:
            try:
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            await until_done(self.settings, self._drain)

    async def _drain(self) -> bool:
        """Write batches until the buffer is empty (or paused); False when a write failed."""
        while not self.paused and len(self.buffer):
            try:
                if not await self.write_batch():
                    return False
            except Exception as exc:  # a bug must not stop recording for good
                logs.event(log, "recording_flush_failed", logging.ERROR, reason=repr(exc))
                return False
        return True

    def _set_health(self, up: bool, exc: Exception | None = None) -> None:
        self.metrics.redis_up.set(1 if up else 0)
        if up != self._healthy:
            self._healthy = up
            logs.event(
                log,
                "recording_redis_up" if up else "recording_redis_down",
                logging.INFO if up else logging.WARNING,
                buffered=len(self.buffer),
                reason=None if exc is None else f"{type(exc).__name__}: {exc}",
            )


def unit_bounds(settings: Settings) -> UnitBounds:
    return UnitBounds(settings.rollout_users_max, settings.rollout_units_ttl)


def history_retention(settings: Settings) -> HistoryRetention | None:
    """The history tiers' retention, or None when history buckets are off."""
    if not settings.history:
        return None
    return HistoryRetention(settings.history_minute_retention, settings.history_hour_retention)


def recorder_for(settings: Settings, metrics: GatewayMetrics) -> Recorder:
    """Redis recording when a Redis is configured; otherwise outcomes are not kept."""
    if not redis_configured(settings):
        return NullRecorder()
    return RedisRecorder(settings, metrics)


async def start_recording(recorder: Recorder) -> None:
    if isinstance(recorder, RedisRecorder):
        recorder.start()


async def stop_recording(recorder: Recorder) -> None:
    if isinstance(recorder, RedisRecorder):
        await recorder.close()

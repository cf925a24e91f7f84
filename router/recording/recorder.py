"""Outcome recording: a bounded in-process buffer, flushed to Redis by a background task.

``record()`` only appends to memory, so a request never waits on Redis. The flusher writes one
Lua call per batch, all or nothing, with the batch's counters summed; each event is guarded by its
request's attribution hash, so a retried batch never counts twice. While Redis is down, events
wait (up to ``recording_buffer_size``); past the bound the oldest waiting event is dropped and
counted. At every moment ``produced = written + buffered + dropped`` on ``/metrics``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from router.core import logs
from router.core.errors import Unavailable
from router.core.metrics import GatewayMetrics
from router.core.settings import Settings
from router.recording.buffer import OutcomeBuffer, Pending
from router.recording.events import Outcome, RecordedEvent, ShadowComparison, Tally
from router.storage.client import connect, is_transient
from router.storage.codec import dumps, flatten
from router.storage.retry import drain_within, until_done
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
    keys: list[str]
    payload: str
    """ARGV[1] of the write script."""
    sent: list[Pending]
    """The events in the payload, in order."""
    repeated: int
    """Events whose guard already occurs earlier in the batch (not sent)."""
    unencodable: int


def encode_batch(batch: list[Pending], stream_maxlen: int, attribution_ttl: int) -> EncodedBatch:
    """The write script's KEYS and payload: one guard + its fields + stream entries per event,
    and the batch's counter increments summed."""
    table = KeyTable()
    tally = Tally()
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


class RedisRecorder:
    """A ``Recorder`` that buffers outcomes and writes them to Redis in the background."""

    def __init__(
        self,
        settings: Settings,
        metrics: GatewayMetrics,
        client: aioredis.Redis | None = None,
    ) -> None:
        self.redis = client or connect(settings)
        self.settings = settings
        self.metrics = metrics
        self.buffer = OutcomeBuffer(settings.recording_buffer_size)
        self.paused = False
        self._script = self.redis.register_script(WRITE_EVENTS_LUA)
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
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
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
        """Write one batch. True when it left the buffer, False when it must be retried."""
        async with self._lock:
            batch = self.buffer.take(self.settings.recording_batch_size)
            if not batch:
                return True
            started = time.perf_counter()
            try:
                done = await self._apply(batch)
            except RedisError as exc:
                if is_transient(exc):
                    self.buffer.restore()
                    self._set_health(False, exc)
                    self.metrics.events_buffered.set(len(self.buffer))
                    return False
                done = {"redis_refused": len(batch)}
                logs.event(
                    log,
                    "recording_batch_refused",
                    logging.ERROR,
                    events=len(batch),
                    reason=str(exc),
                )
            except BaseException:
                self.buffer.restore()
                raise
            self.buffer.commit()
            self.metrics.events_written.inc(done.pop("written", 0))
            for reason, count in done.items():
                if count:
                    self.metrics.events_dropped.labels(reason).inc(count)
            self.metrics.events_buffered.set(len(self.buffer))
            if "redis_refused" not in done:
                self.metrics.flush_seconds.observe(time.perf_counter() - started)
                self._set_health(True)
            return True

    async def _apply(self, batch: list[Pending]) -> dict[str, int]:
        """Run the write script until every event is written or known to be there already.

        The script writes a batch all or nothing. When some request ids already have a guard
        (a retry of a batch that did reach Redis, or an id used twice), it writes nothing and
        says which; those are settled and the rest is sent again, so this loop always shrinks.
        """
        settled = {"written": 0, "duplicate_request_id": 0, "unencodable": 0}
        while batch:
            encoded = encode_batch(
                batch, self.settings.recording_stream_maxlen, self.settings.attribution_ttl
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


def recorder_for(settings: Settings, metrics: GatewayMetrics) -> Recorder:
    """Redis recording when ``redis_url`` is set; otherwise outcomes are not kept."""
    if not settings.redis_url:
        return NullRecorder()
    return RedisRecorder(settings, metrics)


async def start_recording(recorder: Recorder) -> None:
    if isinstance(recorder, RedisRecorder):
        recorder.start()


async def stop_recording(recorder: Recorder) -> None:
    if isinstance(recorder, RedisRecorder):
        await recorder.close()

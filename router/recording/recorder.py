"""Outcome recording: a bounded in-process buffer, flushed to Redis by a background task.

``record()`` only appends to memory, so a request never waits on Redis. The flusher writes one
Lua call per batch, all or nothing, with the batch's counters summed; each event is guarded by its
request's attribution hash, so a retried batch never counts twice. While Redis is down, events
wait (up to ``recording_buffer_size``); past the bound the oldest waiting event is dropped and
counted. At every moment ``produced = written + buffered + dropped`` on ``/metrics``.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import random
import time
import uuid
from collections import deque
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from router.core import logs
from router.core.errors import Unavailable
from router.core.metrics import LATENCY_BUCKETS, GatewayMetrics
from router.core.settings import Settings
from router.gateway.mirror import ShadowComparison
from router.recording import shadow_events as shadow_recording
from router.recording.events import NullRecorder, Outcome, Recorder
from router.storage import keys
from router.storage.scripts import (
    TRANSIENT_REPLIES,
    WRITE_EVENTS_LUA,
    Command,
    KeyTable,
    connect,
    dumps,
)

log = logging.getLogger("turnout.recording")

LATENCY_BOUNDS_MS: tuple[float, ...] = tuple(b * 1000.0 for b in LATENCY_BUCKETS)


def bound_name(bound_ms: float) -> str:
    return f"{bound_ms:g}"


def latency_field(latency_ms: float) -> str:
    """The non-cumulative bucket a latency falls in: the first upper bound >= it, else +Inf."""
    index = bisect.bisect_left(LATENCY_BOUNDS_MS, latency_ms)
    bound = bound_name(LATENCY_BOUNDS_MS[index]) if index < len(LATENCY_BOUNDS_MS) else "+Inf"
    return keys.LATENCY_BUCKET + bound


def label_type(label: object) -> str:
    """JSON type of a label; feedback must give a label of the served label's type."""
    if isinstance(label, bool):
        return "bool"
    if isinstance(label, int):
        return "int"
    if isinstance(label, float):
        return "float"
    if isinstance(label, str):
        return "str"
    return "other"


def is_positive(label: object) -> bool:
    return label is True or (label_type(label) == "int" and label == 1)


def _num(value: float) -> str:
    return repr(float(value))


class Tally:
    """Counter increments of a batch, summed per (key, field) so a batch costs one command each."""

    def __init__(self) -> None:
        self.ints: dict[tuple[str, str], int] = {}
        self.floats: dict[tuple[str, str], float] = {}
        self.members: dict[str, set[str]] = {}

    def incr(self, key: str, field: str, amount: int = 1) -> None:
        self.ints[key, field] = self.ints.get((key, field), 0) + amount

    def add(self, key: str, field: str, amount: float) -> None:
        self.floats[key, field] = self.floats.get((key, field), 0.0) + amount

    def member(self, key: str, member: str) -> None:
        self.members.setdefault(key, set()).add(member)

    def commands(self) -> list[Command]:
        out: list[Command] = [("SADD", k, tuple(sorted(m))) for k, m in self.members.items()]
        out += [("HINCRBY", k, (f, str(n))) for (k, f), n in self.ints.items()]
        out += [("HINCRBYFLOAT", k, (f, _num(x))) for (k, f), x in self.floats.items()]
        return out


def count_outcome(tally: Tally, outcome: Outcome) -> None:
    """One outcome's counter increments: assignment side on the chosen variant, answer side on
    the variant that answered (the control after a fallback)."""
    exp = outcome.experiment
    chosen = keys.counters(exp, outcome.variant)
    answered = outcome.served_variant
    tally.member(keys.experiments(), exp)
    tally.member(keys.variants(exp), outcome.variant)
    tally.incr(chosen, keys.ASSIGNED)
    if outcome.sticky:
        tally.incr(chosen, keys.STICKY)
    tally.incr(keys.assigned(exp, outcome.config_version), outcome.variant)
    tally.add(chosen, keys.LATENCY_SUM, outcome.latency_ms)
    tally.incr(chosen, latency_field(outcome.latency_ms))
    if answered is None or outcome.status >= 500:
        tally.incr(chosen, keys.ERRORS)
    if outcome.fallback:
        tally.incr(chosen, keys.FALLBACKS)
    if answered is None:
        return
    served = keys.counters(exp, answered)
    tally.member(keys.variants(exp), answered)
    tally.incr(served, keys.SERVED)
    if 400 <= outcome.status < 500:
        tally.incr(served, keys.REJECTED)
    if outcome.label is not None or outcome.score is not None:
        tally.incr(served, keys.PREDICTIONS)
    if outcome.label is not None:
        tally.incr(served, keys.LABELLED)
        tally.incr(served, keys.LABEL + dumps(outcome.label))
        if is_positive(outcome.label):
            tally.incr(served, keys.POSITIVE)
    if outcome.score is not None:
        tally.incr(served, keys.SCORED)
        tally.add(served, keys.SCORE_SUM, outcome.score)
        tally.add(served, keys.SCORE_SUMSQ, outcome.score**2)


def stream_command(outcome: Outcome, stream_maxlen: int) -> Command:
    fields = _flatten(event_fields(outcome))
    return (
        "XADD",
        keys.events(outcome.experiment),
        ("MAXLEN", "~", str(stream_maxlen), "*", *fields),
    )


def event_fields(outcome: Outcome) -> dict[str, str]:
    """The stream entry of one request: no raw text, the user key only as its salted hash."""
    fields = {
        "request_id": outcome.request_id,
        "experiment": outcome.experiment,
        "config_version": outcome.config_version,
        "variant": outcome.variant,
        "sticky": "1" if outcome.sticky else "0",
        "propensity": _num(outcome.propensity),
        "status": str(outcome.status),
        "latency_ms": _num(outcome.latency_ms),
        "fallback": "1" if outcome.fallback else "0",
        "ts": _num(outcome.ts),
    }
    optional = {
        "served_variant": outcome.served_variant,
        "version": outcome.version,
        "user_hash": outcome.user_hash,
        "label": None if outcome.label is None else dumps(outcome.label),
        "score": None if outcome.score is None else _num(outcome.score),
    }
    fields.update({k: v for k, v in optional.items() if v is not None})
    return fields


def attribution_fields(outcome: Outcome) -> dict[str, str]:
    """What ``POST /feedback`` needs to credit the version that answered."""
    fields = {
        "experiment": outcome.experiment,
        "config_version": outcome.config_version,
        "variant": outcome.variant,
        "fallback": "1" if outcome.fallback else "0",
        "ts": _num(outcome.ts),
        "propensity": _num(outcome.propensity),
    }
    if outcome.served_variant is not None and outcome.status < 400:
        # Only an answer with a prediction can be credited; a refused input cannot.
        fields["served_variant"] = outcome.served_variant
    if outcome.version is not None:
        fields["version"] = outcome.version
    if outcome.label is not None:
        fields["label"] = dumps(outcome.label)
        fields["label_type"] = label_type(outcome.label)
    return fields


def sticky_command(outcome: Outcome, stream_maxlen: int) -> Command | None:
    """A sticky bandit user's first draw, which every replica pulls into its cache."""
    if outcome.sticky_until is None or outcome.user_hash is None:
        return None
    fields = ("u", outcome.user_hash, "v", outcome.variant, "p", _num(outcome.propensity))
    return (
        "XADD",
        keys.bandit_sticky(outcome.experiment),
        ("MAXLEN", "~", str(stream_maxlen), "*", *fields, "x", _num(outcome.sticky_until)),
    )


def _flatten(fields: dict[str, str]) -> tuple[str, ...]:
    return tuple(item for pair in fields.items() for item in pair)


@dataclass(frozen=True, slots=True)
class Pending:
    token: str
    """Unique per recorded event; the write guard compares it to tell a retry from a reused id."""
    outcome: Outcome | ShadowComparison
    """A request's outcome, or a shadow's comparison for it (both share the buffer)."""


class OutcomeBuffer:
    """FIFO of events waiting for Redis, holding at most ``capacity`` (the batch in flight too).

    Drop rule when full: the oldest event that is not being written right now is dropped, so the
    buffer keeps the most recent traffic. If every held event is in flight, the newcomer is the
    one dropped. Pure: no I/O, no clock.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._queue: deque[Pending] = deque()
        self._in_flight: list[Pending] = []
        self._ids: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._queue) + len(self._in_flight)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def append(self, item: Pending) -> Pending | None:
        """Add ``item``; return the event dropped to make room, if any."""
        dropped = None
        if len(self) >= self.capacity:
            if not self._queue:
                return item
            dropped = self._queue.popleft()
            self._forget(dropped)
        self._queue.append(item)
        rid = item.outcome.request_id
        self._ids[rid] = self._ids.get(rid, 0) + 1
        return dropped

    def take(self, size: int) -> list[Pending]:
        """Move up to ``size`` of the oldest events in flight (one batch at a time)."""
        if self._in_flight:
            raise RuntimeError("a batch is already in flight")
        count = min(size, len(self._queue))
        self._in_flight = [self._queue.popleft() for _ in range(count)]
        return list(self._in_flight)

    def commit(self) -> list[Pending]:
        """The batch in flight was written (or given up): it leaves the buffer."""
        batch, self._in_flight = self._in_flight, []
        for item in batch:
            self._forget(item)
        return batch

    def restore(self) -> None:
        """The write failed: the batch goes back to the front, in its order."""
        self._queue.extendleft(reversed(self._in_flight))
        self._in_flight = []

    def holds(self, request_id: str) -> bool:
        return request_id in self._ids

    def clear(self) -> int:
        """Drop everything not in flight; return how many events that was."""
        count = len(self._queue)
        for item in self._queue:
            self._forget(item)
        self._queue.clear()
        return count

    def _forget(self, item: Pending) -> None:
        rid = item.outcome.request_id
        left = self._ids[rid] - 1
        if left:
            self._ids[rid] = left
        else:
            del self._ids[rid]


@dataclass
class EncodedBatch:
    keys: list[str]
    payload: str
    """ARGV[1] of the write script."""
    sent: list[Pending]
    """The events in the payload, in order."""
    repeated: int
    """Events whose request id already occurs earlier in the batch (not sent)."""
    unencodable: int


def encode_batch(batch: list[Pending], stream_maxlen: int, attribution_ttl: int) -> EncodedBatch:
    """The write script's KEYS and payload: one guard + attribution + stream entry per event,
    and the batch's counter increments summed."""
    table = KeyTable()
    tally = Tally()
    events: list[dict[str, object]] = []
    streams: list[Command] = []
    sent: list[Pending] = []
    ids: set[str] = set()
    repeated = unencodable = 0
    for item in batch:
        outcome = item.outcome
        if isinstance(outcome, ShadowComparison):
            guard = shadow_recording.guard_key(outcome)
        else:
            guard = keys.request(outcome.request_id)
        if guard in ids:
            repeated += 1
            continue
        try:
            if isinstance(outcome, ShadowComparison):
                attribution = _flatten(shadow_recording.guard_fields(outcome))
                entries = shadow_recording.stream_commands(outcome, stream_maxlen)
            else:
                attribution = _flatten(attribution_fields(outcome))
                entries = [stream_command(outcome, stream_maxlen)]
                held = sticky_command(outcome, stream_maxlen)
                if held is not None:
                    entries.append(held)
        except (TypeError, ValueError) as exc:  # a label orjson cannot encode
            unencodable += 1
            logs.event(log, "recording_unencodable", logging.ERROR, reason=str(exc))
            continue
        ids.add(guard)
        if isinstance(outcome, ShadowComparison):
            shadow_recording.count_comparison(
                tally.ints, tally.floats, tally.members, outcome, LATENCY_BOUNDS_MS
            )
        else:
            count_outcome(tally, outcome)
        streams.extend(entries)
        sent.append(item)
        events.append({"g": table.ref(guard), "t": item.token, "a": attribution})
    payload = {
        "e": events,
        "x": str(attribution_ttl),
        "c": table.encode([*streams, *tally.commands()]),
    }
    return EncodedBatch(table.keys, dumps(payload), sent, repeated, unencodable)


def is_transient(exc: RedisError) -> bool:
    """Connection trouble and "busy" replies are retried; a refused script is not."""
    if isinstance(exc, ResponseError):
        return str(exc).startswith(TRANSIENT_REPLIES)
    return True


class RedisRecorder:
    """A ``Recorder`` that buffers outcomes and writes them to Redis in the background."""

    def __init__(
        self,
        settings: Settings,
        metrics: GatewayMetrics,
        client: aioredis.Redis | None = None,
    ) -> None:
        if client is None:
            if not settings.redis_url:
                raise ValueError("RedisRecorder needs settings.redis_url or a client")
            client = connect(
                settings.redis_url, settings.redis_socket_timeout, settings.redis_connect_timeout
            )
        self.redis = client
        self.settings = settings
        self.metrics = metrics
        self.buffer = OutcomeBuffer(settings.recording_buffer_size)
        self.paused = False
        self._script = client.register_script(WRITE_EVENTS_LUA)
        self._replica = uuid.uuid4().hex[:12]
        self._seq = 0
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._jitter = random.Random()
        self._healthy = True

    # --- the request path: memory only --------------------------------------------------
    def record(self, outcome: Outcome | ShadowComparison) -> None:
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
        try:
            async with asyncio.timeout(self.settings.recording_shutdown_timeout):
                while len(self.buffer):
                    if not await self.write_batch():
                        await asyncio.sleep(0.05)
        except TimeoutError:
            pass
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
        backoff = interval
        while True:
            try:
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            while not self.paused and len(self.buffer):
                try:
                    ok = await self.write_batch()
                except Exception as exc:  # a bug must not stop recording for good
                    logs.event(log, "recording_flush_failed", logging.ERROR, reason=repr(exc))
                    ok = False
                if ok:
                    backoff = interval
                    continue
                # Exponential backoff with jitter, so replicas do not reconnect in lockstep.
                await asyncio.sleep(backoff * (0.5 + self._jitter.random()))
                backoff = min(backoff * 2.0, self.settings.recording_retry_max)

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

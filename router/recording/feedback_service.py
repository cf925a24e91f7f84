"""The feedback path: applied at once, or held in a bounded queue while Redis is unreachable.

``POST /feedback`` tries Redis first. When Redis cannot be reached (a connection error, a
timeout or a "busy" reply, never a refusal by the feedback rules) a valid feedback joins this
queue and is answered 202 ``queued``; past ``feedback_queue_size`` it is answered 503
``feedback_queue_full`` and counted, never dropped silently. A background task applies the
queue in order, each feedback only once the recorder has written its request's outcome
(``flush_through``: while Redis is down that outcome may still wait in the recorder's buffer),
through the same ``FeedbackWriter.accept`` as the route: a duplicate or an unknown request id
is refused by the same rules and counted, and a bandit posterior is updated inside the same
script. While Redis stays down the task backs off (``recording_flush_interval`` doubling up to
``recording_retry_max``, with jitter). At shutdown the queue gets ``recording_shutdown_timeout``
to drain; what is left is counted as lost.

Every queued feedback ends in exactly one result of ``turnout_feedback_deferred_total``:
queued = applied + duplicate + unknown + invalid + error + shutdown + ``turnout_feedback_queued``.

Feedback for a request that no replica has recorded yet (Redis answers, but holds no
attribution) is held, not refused: ``router.recording.feedback_hold``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from redis.exceptions import RedisError

from router.bandit.runtime import BanditRuntime
from router.core import logs
from router.core.errors import NotFound, Unavailable
from router.core.metrics import GatewayMetrics
from router.core.settings import Settings
from router.recording.feedback import (
    Credit,
    FeedbackInput,
    FeedbackWriter,
    LabelSource,
)
from router.recording.feedback_auth import feedback_secret
from router.recording.feedback_hold import FeedbackHold, Held, HeldReply, apply_later
from router.recording.recorder import Recorder, RedisRecorder, unit_bounds
from router.storage.client import feedback_replicas, is_transient
from router.storage.retry import drain_within, stop, until_done

log = logging.getLogger("turnout.feedback")

UNREACHABLE = "Redis is unreachable; the feedback will be applied exactly once when it is back"
BEHIND = (
    "an earlier feedback for this request is still queued; this one is checked after it, "
    "by the same exactly-once rule"
)


@dataclass(frozen=True, slots=True)
class Queued:
    """The answer to a feedback that was queued instead of applied (HTTP 202)."""

    request_id: str
    detail: str


@dataclass(frozen=True, slots=True)
class Deferred:
    feedback: FeedbackInput
    received: float
    """When the gateway accepted it: the feedback's timestamp once applied."""
    token: str
    """Stored with the feedback, so a retry after a lost reply knows it was applied."""


class FeedbackService:
    """Applies feedback now, or queues it while Redis is unreachable and applies it later."""

    def __init__(
        self,
        writer: FeedbackWriter,
        recorder: RedisRecorder,
        settings: Settings,
        metrics: GatewayMetrics,
        clock: Callable[[], float],
    ) -> None:
        self.writer = writer
        self.hold = FeedbackHold(writer, recorder.redis, settings, metrics, clock)
        self.recorder = recorder
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.capacity = settings.feedback_queue_size
        self._queue: deque[Deferred] = deque()
        self._ids: dict[str, int] = {}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._replica = uuid.uuid4().hex[:12]
        self._seq = 0

    @classmethod
    def for_recorder(
        cls,
        settings: Settings,
        recorder: Recorder,
        metrics: GatewayMetrics,
        clock: Callable[[], float],
        bandits: BanditRuntime | None = None,
        labels: LabelSource | None = None,
        auth_of: Callable[[str], str] | None = None,
    ) -> FeedbackService | None:
        """The feedback path of a gateway that records to Redis; None when it does not.
        ``auth_of`` says an experiment's ``feedback.auth`` (None: all are open)."""
        if not isinstance(recorder, RedisRecorder):
            return None
        target = bandits.target if bandits else None
        writer = FeedbackWriter(
            recorder.redis,
            settings.recording_stream_maxlen,
            target,
            feedback_replicas(settings),
            settings.feedback_wait_timeout,
            metrics.feedback_unreplicated.inc,
            labels,
            unit_bounds(settings),
            auth_of,
            feedback_secret(settings),
        )
        return cls(writer, recorder, settings, metrics, clock)

    def __len__(self) -> int:
        return len(self._queue)

    def holds(self, request_id: str) -> bool:
        return request_id in self._ids

    # --- the route ----------------------------------------------------------------------
    async def accept(self, feedback: FeedbackInput) -> Credit | Queued | HeldReply:
        """Apply ``feedback`` now, hold it until its request is recorded, or queue it when
        Redis cannot be reached. Raises the writer's refusals (404, 409, 422), 503 when the
        queue or the hold is full, and a ``RedisError`` that is no connection trouble (Redis
        refused the script)."""
        token = self._next_token()
        rid = feedback.request_id
        self.writer.check_label(feedback)
        if self.holds(rid):
            # The first feedback sent for a request must be the one that counts.
            return self._put(Deferred(feedback, self.clock(), token), BEHIND)
        if self.hold.holds(rid):
            now = self.clock()
            limit = self.settings.feedback_hold_seconds
            return self.hold.hold(Held(feedback, now, token, now + limit), behind=True)
        try:
            await self.recorder.flush_through(rid)
            try:
                return await self.writer.accept(feedback, self.clock(), token)
            except NotFound as exc:
                if exc.code != "unknown_request":
                    raise
                return await self.hold.admit(feedback, token)
        except Unavailable as exc:  # the request's outcome could not be written first
            if exc.code != "redis_unavailable":
                raise
            reason = exc.detail
        except RedisError as exc:
            if not is_transient(exc):
                raise
            reason = f"{type(exc).__name__}: {exc}"
        self.metrics.redis_up.set(0)
        return self._put(Deferred(feedback, self.clock(), token), UNREACHABLE, reason)

    def _put(self, item: Deferred, detail: str, reason: str | None = None) -> Queued:
        rid = item.feedback.request_id
        if len(self._queue) >= self.capacity:
            self.metrics.feedback_deferred.labels("refused_full").inc()
            logs.event(
                log, "feedback_queue_full", logging.WARNING, request_id=rid, queued=len(self)
            )
            raise Unavailable(
                f"Redis is unreachable and the deferred-feedback queue is full ({self.capacity} "
                "feedbacks wait, TURNOUT_FEEDBACK_QUEUE_SIZE): this feedback was not accepted; "
                "send it again later",
                code="feedback_queue_full",
            )
        if not self._queue:
            logs.event(log, "feedback_deferred", logging.WARNING, request_id=rid, reason=reason)
        self._queue.append(item)
        self._ids[rid] = self._ids.get(rid, 0) + 1
        self.metrics.feedback_deferred.labels("queued").inc()
        self.metrics.feedback_queued.set(len(self._queue))
        self._wake.set()
        return Queued(rid, detail)

    def _next_token(self) -> str:
        self._seq += 1
        return f"{self._replica}:{self._seq}"

    # --- applying the queue -------------------------------------------------------------
    async def apply_next(self) -> bool:
        """Apply the oldest queued feedback; False while Redis is unreachable (it stays first)."""
        async with self._lock:
            if not self._queue:
                return True
            item = self._queue[0]
            rid = item.feedback.request_id
            try:
                await self.recorder.flush_through(rid)
                result, detail = await apply_later(
                    self.writer, self.metrics, item.feedback, item.received, item.token
                )
            except Unavailable:
                return False
            except RedisError as exc:
                if is_transient(exc):
                    self.metrics.redis_up.set(0)
                    return False
                result, detail = "error", f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # a bug must not hold the queue behind it for good
                result, detail = "error", repr(exc)
            self._pop()
            self.metrics.feedback_deferred.labels(result).inc()
            if result != "error":
                self.metrics.redis_up.set(1)
            if detail is not None:
                level = logging.ERROR if result == "error" else logging.WARNING
                logs.event(
                    log,
                    "deferred_feedback_refused",
                    level,
                    request_id=rid,
                    result=result,
                    detail=detail,
                )
            if not self._queue:
                logs.event(log, "feedback_queue_drained")
            return True

    def _pop(self) -> None:
        rid = self._queue.popleft().feedback.request_id
        left = self._ids[rid] - 1
        if left:
            self._ids[rid] = left
        else:
            del self._ids[rid]
        self.metrics.feedback_queued.set(len(self._queue))

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        self.hold.start()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="turnout-feedback-drain")

    async def close(self) -> None:
        """Stop the task, apply what is queued within the recorder's shutdown timeout, count
        the rest (call it before the recorder closes its Redis client)."""
        await self.hold.close()
        if self._task is not None:
            await stop(self._task)
            self._task = None
        await drain_within(
            self.settings.recording_shutdown_timeout, lambda: bool(self._queue), self.apply_next
        )
        lost = len(self._queue)
        if lost:
            self._queue.clear()
            self._ids.clear()
            self.metrics.feedback_deferred.labels("shutdown").inc(lost)
            self.metrics.feedback_queued.set(0)
            logs.event(log, "deferred_feedback_lost_at_shutdown", logging.ERROR, feedbacks=lost)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await until_done(self.settings, self._drain)

    async def _drain(self) -> bool:
        """Apply the queue in order; False while Redis is unreachable."""
        while self._queue:
            if not await self.apply_next():
                return False
        return True

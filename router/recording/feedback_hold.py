"""Feedback for a request no replica has recorded yet: held, bounded, applied exactly once.

Each replica writes its outcomes to Redis every ``recording_flush_interval``, so feedback sent
to another replica right after the prediction finds no attribution there yet. It is not
refused as unknown:

- it first waits up to ``feedback_hold_wait`` for the attribution to land (polling Redis);
  most land within a flush interval, and the answer is then the usual one (200, 409, 422);
- otherwise it is held: answered 202 ``held`` with the reason, and applied when the
  attribution lands, by the same writer with the same token (so exactly once, and a duplicate
  is still a duplicate), or counted ``expired`` once ``feedback_hold_seconds`` have passed
  since the request was made (a UUIDv7 request id carries its time; for any other id, since
  the feedback arrived);
- a UUIDv7 request id older than that, which nobody recorded, is truly unknown: 404 at once.

At most ``feedback_hold_max`` feedbacks are held; past it, 503 ``feedback_hold_full``. Every
held feedback ends in exactly one result of ``turnout_feedback_held_total``:
held = applied + duplicate + invalid + unknown + expired + error + shutdown +
``turnout_feedback_holding``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from redis.exceptions import RedisError

from router.core import logs
from router.core.errors import Conflict, InvalidInput, NotFound, Unavailable
from router.core.ids import request_time
from router.core.metrics import GatewayMetrics
from router.core.settings import Settings
from router.recording.feedback import AppliedBefore, Credit, FeedbackInput, FeedbackWriter
from router.storage import keys
from router.storage.client import RedisClient, is_transient
from router.storage.codec import text

log = logging.getLogger("turnout.feedback")


async def apply_later(
    writer: FeedbackWriter,
    metrics: GatewayMetrics,
    feedback: FeedbackInput,
    received: float,
    token: str,
) -> tuple[str, str | None]:
    """Apply feedback answered 202 earlier (held, or queued while Redis was away) and say what
    became of it: ``applied``, or ``duplicate``, ``invalid``, ``unknown``, ``error`` with the
    reason. Raises what means "try again later": ``Unavailable`` and transient Redis errors."""
    try:
        credit = await writer.accept(feedback, received, token)
    except AppliedBefore as exc:  # the reply of an earlier attempt was lost
        metrics.feedback.labels(exc.experiment, exc.version or "none").inc()
        return "applied", None
    except Conflict as exc:
        return "duplicate", exc.detail
    except InvalidInput as exc:
        return "invalid", exc.detail
    except NotFound as exc:  # recorded without a prediction, or expired meanwhile
        return "unknown", exc.detail
    except RedisError as exc:
        if is_transient(exc):
            raise
        return "error", f"{type(exc).__name__}: {exc}"
    metrics.feedback.labels(credit.experiment, credit.version or "none").inc()
    return "applied", None


@dataclass(frozen=True, slots=True)
class Held:
    feedback: FeedbackInput
    received: float
    token: str
    deadline: float
    """When it stops waiting for its request's attribution and counts as expired."""


@dataclass(frozen=True, slots=True)
class HeldReply:
    """The answer to a held feedback (HTTP 202)."""

    request_id: str
    detail: str


class FeedbackHold:
    def __init__(
        self,
        writer: FeedbackWriter,
        client: RedisClient,
        settings: Settings,
        metrics: GatewayMetrics,
        clock: Callable[[], float],
    ) -> None:
        self.writer = writer
        self.redis = client
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self._held: list[Held] = []
        self._ids: dict[str, int] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._held)

    def holds(self, request_id: str) -> bool:
        return request_id in self._ids

    # --- the route ----------------------------------------------------------------------
    async def admit(self, feedback: FeedbackInput, token: str) -> Credit | HeldReply:
        """Feedback whose request has no attribution in Redis: wait, hold or refuse it."""
        rid = feedback.request_id
        now = self.clock()
        limit = self.settings.feedback_hold_seconds
        made = request_time(rid)
        if made is not None and now - made > limit:
            raise NotFound(
                f"no recorded request {rid!r}: its id says it was made {now - made:.0f}s ago "
                f"and no replica recorded it within {limit:g}s (or it is older than the "
                "attribution TTL)",
                code="unknown_request",
            )
        deadline = (made if made is not None else now) + limit
        wait = min(self.settings.feedback_hold_wait, deadline - now)
        if await self._lands_within(rid, wait):
            return await self.writer.accept(feedback, now, token)
        return self.hold(Held(feedback, now, token, deadline))

    def hold(self, item: Held, behind: bool = False) -> HeldReply:
        rid = item.feedback.request_id
        if len(self._held) >= self.settings.feedback_hold_max:
            self.metrics.feedback_held.labels("refused_full").inc()
            raise Unavailable(
                f"{len(self._held)} feedbacks already wait for their requests to be recorded "
                "(TURNOUT_FEEDBACK_HOLD_MAX): this one was not accepted; send it again later",
                code="feedback_hold_full",
            )
        self._held.append(item)
        self._ids[rid] = self._ids.get(rid, 0) + 1
        self.metrics.feedback_held.labels("held").inc()
        self.metrics.feedback_holding.set(len(self._held))
        if behind:
            detail = (
                "an earlier feedback for this request is held; this one is checked after it, "
                "by the same exactly-once rule"
            )
        else:
            detail = (
                "no replica has recorded this request yet (its outcome may still wait in "
                "another replica's buffer): the feedback is held and applied exactly once when "
                f"the request is recorded, for up to {item.deadline - item.received:.0f}s"
            )
        return HeldReply(rid, detail)

    async def _lands_within(self, rid: str, seconds: float) -> bool:
        loop = asyncio.get_running_loop()
        end = loop.time() + max(0.0, seconds)
        poll = min(0.05, self.settings.recording_flush_interval / 2)
        while True:
            if await self._landed([rid]):
                return True
            if loop.time() >= end:
                return False
            await asyncio.sleep(poll)

    async def _landed(self, rids: list[str]) -> set[str]:
        """The requests whose attribution is written: the locator first names the experiment,
        then the attribution hash in that experiment's slot holds the write guard."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for rid in rids:
                pipe.get(keys.request(rid))
            located = {
                rid: text(found)
                for rid, found in zip(rids, await pipe.execute(), strict=True)
                if found is not None
            }
        if not located:
            return set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for rid, experiment in located.items():
                pipe.hexists(keys.attribution(experiment, rid), keys.TOKEN)
            written = await pipe.execute()
        return {rid for rid, ok in zip(located, written, strict=True) if ok}

    # --- applying what is held ----------------------------------------------------------
    async def sweep(self) -> None:
        """Apply the held feedbacks whose attribution landed (in arrival order), and expire
        those past their deadline. A Redis that cannot be reached ends the sweep early."""
        async with self._lock:
            if not self._held:
                return
            rids = list(dict.fromkeys(h.feedback.request_id for h in self._held))
            landed = await self._landed(rids)
            now = self.clock()
            for item in list(self._held):
                rid = item.feedback.request_id
                if rid in landed:
                    await self._apply(item)
                elif now >= item.deadline:
                    self._settle(item, "expired", "its request was never recorded")

    async def _apply(self, item: Held) -> None:
        feedback = item.feedback
        outcome = await apply_later(self.writer, self.metrics, feedback, item.received, item.token)
        self._settle(item, *outcome)

    def _settle(self, item: Held, result: str, detail: str | None) -> None:
        self._held.remove(item)
        rid = item.feedback.request_id
        left = self._ids[rid] - 1
        if left:
            self._ids[rid] = left
        else:
            del self._ids[rid]
        self.metrics.feedback_held.labels(result).inc()
        self.metrics.feedback_holding.set(len(self._held))
        if detail is not None:
            level = logging.ERROR if result == "error" else logging.WARNING
            logs.event(
                log,
                "held_feedback_not_applied",
                level,
                request_id=rid,
                result=result,
                detail=detail,
            )

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="turnout-feedback-hold")

    async def _run(self) -> None:
        interval = self.settings.recording_flush_interval
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep()
            except RedisError:
                pass  # Redis unreachable: the next sweep tries again
            except Exception as exc:  # a bug must not stop the sweeps for good
                logs.event(log, "feedback_hold_failed", logging.ERROR, reason=repr(exc))

    async def close(self) -> None:
        """Stop sweeping, apply what landed within the shutdown timeout, count the rest."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            async with asyncio.timeout(self.settings.recording_shutdown_timeout):
                await self.sweep()
        except (TimeoutError, RedisError):
            pass
        for item in list(self._held):
            self._settle(item, "shutdown", "the gateway stopped before its request was recorded")

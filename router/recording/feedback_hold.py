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
- a UUIDv7 request id older than that, which nobody recorded, is truly unknown: 404 at once;
  so is one dated further in the future than ``feedback_clock_skew`` (no replica made it), and
  no deadline lies more than ``feedback_hold_seconds`` after the feedback arrived.

Each held request id is checked in Redis after ``recording_flush_interval``, then at doubling
intervals up to ``feedback_hold_check_max`` and once more at its deadline: a held id costs Redis
a bounded number of commands a second (``turnout_feedback_hold_redis_commands_total``), however
many are held.

At most ``feedback_hold_max`` feedbacks are held; past it, 503 ``feedback_hold_full``. Every
held feedback ends in exactly one result of ``turnout_feedback_held_total``:
held = applied + duplicate + invalid + unknown + expired + error + shutdown +
``turnout_feedback_holding``.
"""

from __future__ import annotations

import asyncio
import itertools
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


@dataclass(slots=True)
class Due:
    """When a held request id is next checked in Redis, and the wait before the check after."""

    at: float
    gap: float

    def later(self, now: float, longest: float) -> None:
        self.gap = min(2 * self.gap, longest)
        self.at = now + self.gap


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
        self._held: dict[int, Held] = {}
        """In arrival order, by a number of their own (removal is O(1) however many wait)."""
        self._numbers = itertools.count()
        self._ids: dict[str, int] = {}
        self._due: dict[str, Due] = {}
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
        skew = self.settings.feedback_clock_skew
        if made is not None and made - now > skew:
            raise NotFound(
                f"no recorded request {rid!r}: its id is dated {made - now:.0f}s in the future, "
                f"past the {skew:g}s of clock skew allowed (TURNOUT_FEEDBACK_CLOCK_SKEW), so no "
                "replica made it",
                code="unknown_request",
            )
        if made is not None and now - made > limit:
            raise NotFound(
                f"no recorded request {rid!r}: its id says it was made {now - made:.0f}s ago "
                f"and no replica recorded it within {limit:g}s (or it is older than the "
                "attribution TTL)",
                code="unknown_request",
            )
        deadline = min(made if made is not None else now, now) + limit
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
        self._held[next(self._numbers)] = item
        self._ids[rid] = self._ids.get(rid, 0) + 1
        if rid not in self._due:
            first = self.settings.recording_flush_interval
            self._due[rid] = Due(item.received + first, first)
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
            left = end - loop.time()
            if left <= 0:
                return False
            await asyncio.sleep(min(poll, left))
            poll *= 2  # most land within a flush interval; later ones cost fewer checks

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
        self.metrics.feedback_hold_redis_commands.inc(len(rids))
        if not located:
            return set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for rid, experiment in located.items():
                pipe.hexists(keys.attribution(experiment, rid), keys.TOKEN)
            written = await pipe.execute()
        self.metrics.feedback_hold_redis_commands.inc(len(located))
        return {rid for rid, ok in zip(located, written, strict=True) if ok}

    # --- applying what is held ----------------------------------------------------------
    async def sweep(self, every: bool = False) -> None:
        """Apply the held feedbacks whose attribution landed (in arrival order), and expire
        those past their deadline. Only the request ids due for a check, or at their deadline,
        are looked up (``every``: all of them, at shutdown). A Redis that cannot be reached
        ends the sweep early."""
        async with self._lock:
            if not self._held:
                return
            now = self.clock()
            due = [rid for rid, when in self._due.items() if every or when.at <= now]
            ending = [h.feedback.request_id for h in self._held.values() if now >= h.deadline]
            check = list(dict.fromkeys([*due, *ending]))
            if not check:
                return
            landed = await self._landed(check)
            longest = self.settings.feedback_hold_check_max
            for rid in check:
                if rid not in landed:
                    self._due[rid].later(now, longest)
            for number, item in list(self._held.items()):
                rid = item.feedback.request_id
                if rid in landed:
                    await self._apply(number, item)
                elif now >= item.deadline:
                    self._settle(number, item, "expired", "its request was never recorded")

    async def _apply(self, number: int, item: Held) -> None:
        feedback = item.feedback
        outcome = await apply_later(self.writer, self.metrics, feedback, item.received, item.token)
        self._settle(number, item, *outcome)

    def _settle(self, number: int, item: Held, result: str, detail: str | None) -> None:
        del self._held[number]
        rid = item.feedback.request_id
        left = self._ids[rid] - 1
        if left:
            self._ids[rid] = left
        else:
            del self._ids[rid]
            del self._due[rid]
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
                await self.sweep(every=True)
        except (TimeoutError, RedisError):
            pass
        for number, item in list(self._held.items()):
            self._settle(
                number, item, "shutdown", "the gateway stopped before its request was recorded"
            )

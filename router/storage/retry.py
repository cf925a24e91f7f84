"""How every background writer waits for a Redis that failed: one backoff policy, in one place.

Exponential backoff with jitter, from ``recording_flush_interval`` doubling up to
``recording_retry_max``, so replicas do not reconnect in lockstep. An attempt answers True when
it is done and False when Redis could not be reached; it is tried again until it is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tenacity import AsyncRetrying, retry_if_result, stop_never, wait_exponential_jitter

from router.core.settings import Settings


def redis_backoff(settings: Settings) -> AsyncRetrying:
    interval = settings.recording_flush_interval
    return AsyncRetrying(
        wait=wait_exponential_jitter(
            multiplier=interval, max=settings.recording_retry_max, jitter=interval
        ),
        retry=retry_if_result(lambda done: done is False),
        stop=stop_never,
        reraise=True,
    )


async def until_done(settings: Settings, attempt: Callable[[], Awaitable[bool]]) -> None:
    """Run ``attempt`` until it answers True, backing off while it answers False."""
    await redis_backoff(settings)(attempt)


async def drain_within(
    seconds: float, pending: Callable[[], bool], step: Callable[[], Awaitable[bool]]
) -> None:
    """At shutdown: run ``step`` while ``pending()``, for at most ``seconds`` (a step that
    answers False, Redis unreachable, is retried after a short pause)."""
    try:
        async with asyncio.timeout(seconds):
            while pending():
                if not await step():
                    await asyncio.sleep(0.05)
    except TimeoutError:
        pass


async def stop(task: asyncio.Task[None]) -> None:
    """Cancel a background writer and wait until it has ended. Cancelled again while it runs
    on: under load a cancellation can be absorbed on the way (it was seen around a Sentinel
    failover) and the loop would wait for its next wake-up forever."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)

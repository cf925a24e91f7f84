"""Follow a Redis pub/sub channel with a full re-read as the backstop: the one loop behind every
replica-wide cache (flags, console sign-outs).

A message only says "something changed"; ``refresh`` re-reads the whole state, so a lost
message costs at most one ``interval``. A burst of messages costs one refresh.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from router.core import logs
from router.storage.client import RedisClient, pubsub, ready


async def follow(
    client: RedisClient,
    channel: str,
    refresh: Callable[[], Awaitable[None]],
    interval: float,
    down: Callable[[BaseException], None],
    log: logging.Logger,
    failed_event: str,
) -> None:
    """Refresh on subscribe, on every burst of messages and every ``interval``; on a Redis
    error call ``down`` and start over after at most a second. Runs until cancelled."""
    retry = min(1.0, interval)
    while True:
        try:
            async with pubsub(await ready(client)) as subscription:
                await subscription.subscribe(channel)
                await refresh()
                while True:
                    message = await subscription.get_message(
                        ignore_subscribe_messages=True, timeout=interval
                    )
                    while message is not None:
                        message = await subscription.get_message(
                            ignore_subscribe_messages=True, timeout=0
                        )
                    await refresh()
        except (RedisError, OSError) as exc:
            down(exc)
        except Exception as exc:  # a bug must not stop following for good
            logs.event(log, failed_event, logging.ERROR, reason=repr(exc))
            down(exc)
        await asyncio.sleep(retry)

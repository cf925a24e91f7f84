"""Load generator in its own process: closed loop at a concurrency, or open loop at a rate.

Prints one JSON object: requests, errors (non-2xx or failed), seconds, rps, and latency
percentiles in milliseconds. Open-loop latency is measured from each request's scheduled
start, so queueing shows (closed-loop load hides it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import numpy as np

TEXTS = [
    "I love this song so much",
    "you are such a bitch lol",
    "rt @someone: that game last night was wild",
    "what a beautiful morning for a walk",
    "these hoes aint loyal",
    "can't wait for the weekend",
]


HEADERS = {"content-type": "application/json"}


def body(i: int) -> bytes:
    return json.dumps({"text": TEXTS[i % len(TEXTS)], "user_id": f"user-{i}"}).encode()


Body = Callable[[int], bytes]


async def post_ok(session: aiohttp.ClientSession, url: str, i: int, make: Body = body) -> bool:
    """Send request number ``i``; True when it got a 2xx answer."""
    try:
        async with session.post(url, data=make(i), headers=HEADERS) as response:
            await response.read()
            return response.status < 300
    except aiohttp.ClientError:
        return False


async def closed_loop(
    url: str, concurrency: int, duration: float, make: Body = body
) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration
    counter = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def loop() -> None:
            nonlocal counter, errors
            while time.perf_counter() < deadline:
                counter += 1
                started = time.perf_counter()
                if await post_ok(session, url, counter, make):
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

        await asyncio.gather(*(loop() for _ in range(concurrency)))
    return latencies, errors


async def open_loop(url: str, rate: float, duration: float) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    total = int(rate * duration)
    connector = aiohttp.TCPConnector(limit=512)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()

        async def one(i: int, scheduled: float) -> None:
            nonlocal errors
            if await post_ok(session, url, i):
                latencies.append(time.perf_counter() - scheduled)
            else:
                errors += 1

        tasks = []
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, scheduled)))
        await asyncio.gather(*tasks)
    return latencies, errors


def summary(latencies: list[float], errors: int, seconds: float) -> dict[str, float]:
    ms = np.array(latencies) * 1000.0 if latencies else np.array([0.0])
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(seconds, 3),
        "rps": round(len(latencies) / seconds, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--rate", type=float, default=0.0, help="open loop at this rate")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--body", help="file holding the one JSON body every request sends")
    args = parser.parse_args()
    make = body
    if args.body:
        fixed = Path(args.body).read_bytes()
        make = lambda _: fixed  # noqa: E731
    started = time.perf_counter()
    if args.rate:
        latencies, errors = asyncio.run(open_loop(args.url, args.rate, args.duration))
    else:
        latencies, errors = asyncio.run(
            closed_loop(args.url, args.concurrency, args.duration, make)
        )
    print(json.dumps(summary(latencies, errors, time.perf_counter() - started)))


if __name__ == "__main__":
    main()

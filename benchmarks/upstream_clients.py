"""Which async HTTP client forwards cheapest? Client CPU per request against a real worker.

The gateway's CPU per request decides its throughput on a 2-core machine, so the upstream
client is chosen by this number: httpx (default pool), httpx over the aiohttp transport, and
aiohttp itself, each sending the same POSTs at concurrency 32.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from benchmarks.harness import models_env, start_worker

BODY = b'{"text": "what a lovely day"}'
HEADERS = {"content-type": "application/json"}


async def run(
    send: Callable[[], Awaitable[int]], total: int, concurrency: int
) -> tuple[float, float]:
    remaining = total

    async def loop() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            assert await send() == 200

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return (time.process_time() - cpu) * 1000 / total, total / (time.perf_counter() - wall)


async def with_httpx(
    url: str, total: int, concurrency: int, transport: object = None
) -> tuple[float, float]:
    limits = httpx.Limits(max_connections=concurrency)
    kwargs = {"transport": transport} if transport else {"limits": limits}
    async with httpx.AsyncClient(**kwargs) as client:  # type: ignore[arg-type]

        async def send() -> int:
            return (await client.post(url, content=BODY, headers=HEADERS)).status_code

        return await run(send, total, concurrency)


async def with_aiohttp(url: str, total: int, concurrency: int) -> tuple[float, float]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def send() -> int:
            async with session.post(url, data=BODY, headers=HEADERS) as response:
                await response.read()
                return response.status

        return await run(send, total, concurrency)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    worker = start_worker("v3", models_env())
    url = f"{worker.url}/predict"
    try:
        clients = {
            "httpx (default pool)": lambda: with_httpx(url, args.requests, args.concurrency),
            "httpx + AiohttpTransport": lambda: with_httpx(
                url, args.requests, args.concurrency, AiohttpTransport()
            ),
            "aiohttp": lambda: with_aiohttp(url, args.requests, args.concurrency),
        }
        print(f"client CPU per request, {args.requests} POSTs at c={args.concurrency}")
        for name, job in clients.items():
            asyncio.run(job())  # warm-up run, not reported
            cpu_ms, rps = asyncio.run(job())
            print(f"  {name:26} {cpu_ms:7.3f} ms CPU/request   {rps:8.1f} req/s")
    finally:
        worker.process.stop()


if __name__ == "__main__":
    main()

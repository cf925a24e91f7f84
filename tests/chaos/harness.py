"""What every chaos scenario shares: bounded load from a thread, the gateway's own counters, and
one printed line of figures per scenario."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Gateway


@dataclass
class Sample:
    status: int
    """HTTP status; 0 when the connection failed."""
    seconds: float
    body: dict[str, Any] = field(default_factory=dict)


class Load:
    """A closed loop of ``concurrency`` clients, each sending one request after another (so the
    load is bounded by design), from a thread of its own, until stopped."""

    def __init__(
        self,
        url: str,
        concurrency: int = 4,
        body: Callable[[int], dict[str, Any]] | None = None,
        path: str = "/predict",
        pause: float = 0.0,
    ) -> None:
        self.url = url
        self.concurrency = concurrency
        self.body = body or (lambda i: {"text": f"chaos request {i}", "user_id": f"user-{i}"})
        self.path = path
        self.pause = pause
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def sent(self) -> int:
        return len(self.samples)

    def wait_for(self, more: int, timeout: float = 30.0) -> None:
        target = len(self.samples) + more
        deadline = time.monotonic() + timeout
        while len(self.samples) < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"load stalled at {len(self.samples)} of {target} requests")
            time.sleep(0.02)

    async def _run(self) -> None:
        counter = iter(range(10**9))
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def client() -> None:
                while not self._stop.is_set():
                    i = next(counter)
                    started = time.perf_counter()
                    try:
                        async with session.post(self.url + self.path, json=self.body(i)) as r:
                            raw = await r.read()
                            status = r.status
                    except (aiohttp.ClientError, TimeoutError):
                        status, raw = 0, b"{}"
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        body = {}
                    self.samples.append(Sample(status, time.perf_counter() - started, body))
                    if self.pause:
                        await asyncio.sleep(self.pause)

            await asyncio.gather(*(client() for _ in range(self.concurrency)))


def p99_ms(samples: list[Sample]) -> float:
    return float(np.quantile([s.seconds for s in samples], 0.99) * 1000) if samples else 0.0


def share_2xx(samples: list[Sample]) -> float:
    return sum(200 <= s.status < 300 for s in samples) / len(samples) if samples else 0.0


def metrics(gateway: Gateway) -> dict[str, float]:
    """Every sample of the gateway's /metrics, summed over labels but ``reason`` and ``result``
    (``name{reason}`` keys), plus the recording identity, asserted on every read."""
    out: dict[str, float] = defaultdict(float)
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name] += s.value
            for label in ("reason", "result"):
                if label in s.labels:
                    out[f"{s.name}{{{s.labels[label]}}}"] += s.value
    produced = out["turnout_events_produced_total"]
    accounted = (
        out["turnout_events_written_total"]
        + out["turnout_events_buffered"]
        + out["turnout_events_dropped_total"]
    )
    assert produced == accounted, dict(out)
    return out


def figure(
    scenario: str, samples: list[Sample], gateway: Gateway | None = None, **extra: Any
) -> str:
    """One line of what a scenario measured: 2xx share, p99, the events identity, fallbacks."""
    statuses = Counter(s.status for s in samples)
    ok = sum(v for k, v in statuses.items() if 200 <= k < 300)
    parts = [
        f"2xx {100 * share_2xx(samples):.1f}% ({ok}/{len(samples)})",
        f"p99 {p99_ms(samples):.1f} ms",
    ]
    if set(statuses) - {200}:
        parts.append(f"statuses {dict(sorted(statuses.items()))}")
    if gateway is not None:
        m = metrics(gateway)
        if m["turnout_events_produced_total"]:
            parts.append(
                "events produced {:.0f} = written {:.0f} + buffered {:.0f} + dropped {:.0f}".format(
                    m["turnout_events_produced_total"],
                    m["turnout_events_written_total"],
                    m["turnout_events_buffered"],
                    m["turnout_events_dropped_total"],
                )
            )
        parts.append(f"fallbacks {m['turnout_fallbacks_total']:.0f}")
    parts += [f"{k} {v}" for k, v in extra.items()]
    line = f"[chaos] {scenario}: " + ", ".join(parts)
    print(line)
    return line

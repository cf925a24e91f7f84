"""Shared benchmark plumbing: real processes, their CPU counters, and load legs."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from router.local.processes import ManagedProcess, free_port, http_ok, poll_until

ROOT = Path(__file__).resolve().parent.parent
WRK_SCRIPT = """
counter = 0
texts = {"I love this song so much", "you are such a bitch lol",
         "rt @someone: that game last night was wild", "what a beautiful morning for a walk"}
request = function()
  counter = counter + 1
  local text = texts[(counter % #texts) + 1]
  local body = '{"text": "' .. text .. '", "user_id": "user-' .. counter .. '"}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
"""


@dataclass
class Service:
    process: ManagedProcess
    url: str

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)

    def rss_mb(self) -> float:
        return float(psutil.Process(self.process.pid).memory_info().rss) / 2**20


def start(name: str, argv: list[str], port: int, env: dict[str, str], ready: str) -> Service:
    process = ManagedProcess(
        name,
        argv,
        env={**env, "TURNOUT_ACCESS_LOG": env.get("TURNOUT_ACCESS_LOG", "false")},
        log_path=Path(tempfile.gettempdir()) / f"turnout-bench-{name}-{port}.log",
    ).start()
    url = f"http://127.0.0.1:{port}"
    poll_until(lambda: http_ok(f"{url}{ready}") or not process.alive(), 120, what=name)
    if not process.alive():
        raise RuntimeError(f"{name} failed:\n{process.output()[-2000:]}")
    return Service(process, url)


def start_worker(version: str, env: dict[str, str]) -> Service:
    port = free_port()
    argv = [sys.executable, "-m", "router", "worker", "--version", version, "--port", str(port)]
    return start(f"worker-{version}", argv, port, env, "/readyz")


def start_gateway(experiments: Path, env: dict[str, str]) -> Service:
    port = free_port()
    argv = [sys.executable, "-m", "router", "gateway", "--port", str(port)]
    return start(
        "gateway", argv, port, {**env, "TURNOUT_EXPERIMENTS_DIR": str(experiments)}, "/readyz"
    )


def start_reference_proxy(upstream: str, env: dict[str, str]) -> Service:
    """``benchmarks/reference_proxy.py`` in front of ``upstream`` (it proxies ``/readyz`` too)."""
    port = free_port()
    argv = [sys.executable, str(ROOT / "benchmarks" / "reference_proxy.py")]
    argv += ["--upstream", upstream, "--port", str(port)]
    return start("reference-proxy", argv, port, env, "/readyz")


def load(
    url: str, concurrency: int = 1, duration: float = 5.0, rate: float = 0.0
) -> dict[str, Any]:
    """One leg of load from a separate process: wrk for closed loops when installed."""
    wrk = shutil.which("wrk")
    if wrk and not rate and concurrency > 1:
        return wrk_leg(url, concurrency, duration, wrk)
    argv = [sys.executable, str(ROOT / "benchmarks" / "loadgen.py"), url]
    argv += ["--concurrency", str(concurrency), "--duration", str(duration)]
    if rate:
        argv += ["--rate", str(rate)]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout))


def wrk_leg(url: str, concurrency: int, duration: float, wrk: str = "wrk") -> dict[str, Any]:
    """A closed loop of ``concurrency`` connections from one wrk thread (its own process)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            WRK_SCRIPT + "\ndone = function(summary, latency, requests)\n"
            '  io.write(string.format(\'JSON {"requests": %d, "errors": %d, '
            '"seconds": %f, "p50_ms": %f, "p99_ms": %f}\\n\', summary.requests, '
            "summary.errors.status + summary.errors.connect + summary.errors.read + "
            "summary.errors.write + summary.errors.timeout, summary.duration / 1e6, "
            "latency:percentile(50) / 1000, latency:percentile(99) / 1000))\nend\n"
        )
    try:
        done = subprocess.run(
            [
                wrk,
                "-t1",
                f"-c{concurrency}",
                f"-d{max(1, round(duration))}s",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        os.unlink(script.name)
    line = next(x for x in done.stdout.splitlines() if x.startswith("JSON "))
    result = dict(json.loads(line[5:]))
    result["rps"] = round(result["requests"] / result["seconds"], 1)
    return result


def hey_leg(
    url: str,
    workers: int = 16,
    duration: float = 0.0,
    rate: float = 0.0,
    requests: int = 0,
    body: bytes | None = None,
) -> dict[str, Any]:
    """hey for ``duration`` seconds or ``requests`` requests, at a fixed ``rate`` when given
    (``-q`` is per worker, so each sends ``rate / workers``); latency percentiles from its
    per-request CSV. hey exits 0 even when requests fail, so a request counts as an error
    unless its CSV row shows a 2xx status."""
    hey = shutil.which("hey")
    if hey is None:
        raise RuntimeError("hey is not installed (Debian package hey)")
    body = body or b'{"text": "I love this song so much", "user_id": "user-7"}'
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as file:
        file.write(body)
    argv = [hey, "-c", str(workers), "-m", "POST", "-T", "application/json", "-D", file.name]
    argv += ["-z", f"{max(1, round(duration))}s"] if duration else ["-n", str(requests)]
    if rate:
        argv += ["-q", f"{rate / workers:.3f}"]
    started = time.perf_counter()
    try:
        done = subprocess.run([*argv, "-o", "csv", url], capture_output=True, text=True, check=True)
    finally:
        os.unlink(file.name)
    seconds = time.perf_counter() - started
    times, errors = [], 0
    for row in done.stdout.splitlines()[1:]:
        fields = row.split(",")
        if len(fields) >= 8 and fields[6].startswith("2"):
            times.append(float(fields[0]) * 1000.0)
        elif fields and fields[0]:
            errors += 1
    if not times:
        raise RuntimeError(f"hey got no answer from {url}:\n{done.stdout[-500:]}")
    times.sort()
    return {
        "requests": len(times),
        "errors": errors,
        "seconds": round(seconds, 3),
        "rps": round(len(times) / seconds, 1),
        "p50_ms": times[len(times) // 2],
        "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))],
    }


CANARY_EXPERIMENT = """\
name: bench
model: profanity
control: v1
variants:
  v1: {{url: "{url}"}}
  v2: {{url: "{url}", version: v1}}
policy:
  kind: canary
  weights: {{v1: 90, v2: 10}}
  sticky: user_id
"""
"""The benchmarks' canary: both variants on one worker, so direct and gateway legs compare."""


def write_canary(folder: Path, worker_url: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench.yaml").write_text(CANARY_EXPERIMENT.format(url=worker_url))
    return folder


def with_cpu(services: list[Service], leg: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one leg; add each service's CPU milliseconds per answered request during it."""
    before = [s.cpu_seconds() for s in services]
    result = leg()
    spent = [s.cpu_seconds() - b for s, b in zip(services, before, strict=True)]
    result["cpu_ms_per_request"] = [1000.0 * c / max(result["requests"], 1) for c in spent]
    return result


def cpu_leg(
    target: str, services: list[Service], concurrency: int, duration: float
) -> dict[str, Any]:
    """One closed-loop leg, plus each service's CPU milliseconds per request during it."""
    return with_cpu(services, lambda: load(target, concurrency=concurrency, duration=duration))


def leg_arguments(
    description: str | None, extra: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.Namespace:
    """The options every load benchmark shares (leg length, repetitions, concurrency), plus
    the ``extra`` ones a benchmark adds."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per leg")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop connections")
    if extra is not None:
        extra(parser)
    return parser.parse_args()


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def models_env() -> dict[str, str]:
    return {"TURNOUT_MODELS_DIR": os.environ.get("TURNOUT_MODELS_DIR", str(ROOT / "models"))}

"""``turnout up``: Redis, one worker per Turnout version the experiments name, and the gateway.

Variants of other protocols (BentoML, MLServer, MLflow, any JSON service) are run by their own
tools: ``turnout up`` starts nothing for them, waits a bounded time for them to be ready, and
says which are not.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from router.config.loader import LoadReport
from router.config.resolve import load_directory
from router.core.errors import ConfigError
from router.core.settings import Settings
from router.core.state import StateFolder
from router.local.processes import ManagedProcess, http_ok, poll_until
from router.local.redis_server import EmbeddedRedis
from router.storage.client import redis_configured
from router.upstream.protocols import DEFAULT_PROTOCOL

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class WorkerSpec:
    model: str
    version: str
    host: str
    port: int


@dataclass(frozen=True)
class ExternalSpec:
    """A variant served by a model server ``turnout up`` does not start."""

    experiment: str
    variant: str
    protocol: str
    url: str


def _experiments(settings: Settings) -> LoadReport:
    """What a cold start of the gateway will serve: a refused file's last good version too."""
    return load_directory(
        settings.experiments_dir,
        settings.allowed_hosts,
        settings.experiment_max_bytes,
        StateFolder(settings.state_dir),
    )


def external_servers(settings: Settings) -> list[ExternalSpec]:
    report = _experiments(settings)
    return [
        ExternalSpec(loaded.experiment.name, name, variant.protocol, variant.url)
        for loaded in report.experiments.values()
        for name, variant in loaded.experiment.variants.items()
        if variant.protocol != DEFAULT_PROTOCOL
    ]


def workers_needed(settings: Settings, say: Callable[[str], object] = print) -> list[WorkerSpec]:
    """One worker per local upstream URL that a ``turnout``-protocol variant names. A refused
    file costs its own experiment only: it is named here, and the gateway serves its last good
    version."""
    report = _experiments(settings)
    for error in report.errors.values():
        say(f"refused: {error.detail}")
    specs: dict[tuple[str, int], WorkerSpec] = {}
    for loaded in report.experiments.values():
        exp = loaded.experiment
        for name, variant in exp.variants.items():
            if variant.protocol != DEFAULT_PROTOCOL:
                continue
            url = urlsplit(variant.url)
            if url.hostname not in LOCAL_HOSTS or url.port is None:
                continue
            spec = WorkerSpec(exp.model, exp.version_of(name), url.hostname, url.port)
            previous = specs.setdefault((url.hostname, url.port), spec)
            if previous != spec:
                raise ConfigError(
                    f"{url.hostname}:{url.port} is named for both {previous.model} "
                    f"{previous.version} and {spec.model} {spec.version}"
                )
    return sorted(specs.values(), key=lambda s: s.port)


class Stack:
    def __init__(self, settings: Settings, workdir: Path | None = None) -> None:
        self.settings = settings
        self.workdir = workdir or settings.state_dir
        self.processes: list[ManagedProcess] = []
        self.redis: EmbeddedRedis | None = None

    def start(self, say: Callable[[str], object] = print) -> str:
        settings = self.settings
        specs = workers_needed(settings, say)
        env: dict[str, str] = {}
        if not redis_configured(settings):  # else the children inherit TURNOUT_REDIS_*
            self.redis = EmbeddedRedis(self.workdir / "redis", port=settings.redis_port).start()
            env["TURNOUT_REDIS_URL"] = self.redis.url
            say(f"redis ready at {self.redis.url} (embedded)")
        logs = self.workdir / "logs"
        for spec in specs:
            argv = [sys.executable, "-m", "router", "worker", "--model", spec.model]
            argv += ["--version", spec.version, "--port", str(spec.port), "--host", spec.host]
            self.processes.append(
                ManagedProcess(
                    f"worker {spec.model} {spec.version}",
                    argv,
                    env=env,
                    log_path=logs / f"worker-{spec.version}.log",
                ).start()
            )
        for spec, proc in zip(specs, self.processes, strict=True):
            self._wait(proc, f"http://{spec.host}:{spec.port}/readyz", 120)
            say(f"worker {spec.model} {spec.version} ready at http://{spec.host}:{spec.port}")
        gateway = ManagedProcess(
            "gateway",
            [sys.executable, "-m", "router", "gateway", "--port", str(settings.port)],
            env=env,
            log_path=logs / "gateway.log",
        ).start()
        self.processes.append(gateway)
        url = f"http://{settings.host}:{settings.port}"
        self._wait(gateway, f"{url}/healthz", 60)
        external = external_servers(settings)
        if external:
            self._report_external(url, external, say)
        if http_ok(f"{url}/readyz"):
            say(f"gateway ready at {url}")
        else:
            say(f"gateway up at {url} but NOT READY: {readiness(url)}")
        return url

    def _report_external(
        self, url: str, external: list[ExternalSpec], say: Callable[[str], object]
    ) -> None:
        """Wait (bounded) for model servers run elsewhere, then say which are not ready."""
        states: dict[tuple[str, str], str] = {}

        def all_ready() -> bool:
            states.update(variant_readiness(url))
            return all(
                states.get((s.experiment, s.variant), "").startswith("ready") for s in external
            )

        with contextlib.suppress(TimeoutError):
            poll_until(all_ready, self.settings.up_ready_timeout, 0.5, what="model servers")
        for spec in external:
            state = states.get((spec.experiment, spec.variant), "NOT READY")
            say(
                f"{spec.protocol} model server {spec.variant} of {spec.experiment} at "
                f"{spec.url}: {state} (not started by turnout up)"
            )

    def _wait(self, proc: ManagedProcess, url: str, timeout: float) -> None:
        try:
            poll_until(lambda: http_ok(url) or not proc.alive(), timeout, what=proc.name)
        except TimeoutError:
            raise RuntimeError(f"{proc.name} did not become ready; see {proc.log_path}") from None
        if not proc.alive():
            tail = proc.output()[-2000:]
            raise RuntimeError(f"{proc.name} exited during start-up:\n{tail}")

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()
        if self.redis is not None:
            self.redis.stop()
            self.redis = None

    def watch(self, say: Callable[[str], object] = print) -> None:
        """Block until Ctrl-C / SIGTERM, reporting children that exit on their own."""
        stopping = False

        def on_signal(signum: int, _: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        reported: set[str] = set()
        while not stopping:
            for proc in self.processes:
                if not proc.alive() and proc.name not in reported:
                    reported.add(proc.name)
                    say(f"{proc.name} exited (code {proc.proc and proc.proc.returncode})")
            time.sleep(0.2)


def variant_readiness(url: str) -> dict[tuple[str, str], str]:
    """(experiment, variant) -> ``ready``, ``ready (passive health)`` or ``NOT READY``, as the
    gateway's ``GET /experiments`` says."""
    body = httpx.get(f"{url}/experiments", timeout=2.0).json()
    return {
        (exp["name"], variant): _state(state)
        for exp in body.get("experiments", [])
        for variant, state in exp.get("upstreams", {}).items()
    }


def _state(state: dict[str, object]) -> str:
    if not state.get("ready"):
        return "NOT READY"
    return "ready (passive health)" if state.get("health") == "passive" else "ready"


def readiness(url: str) -> str:
    try:
        return str(httpx.get(f"{url}/readyz", timeout=2.0).json().get("detail"))
    except (httpx.HTTPError, ValueError):
        return "no answer from /readyz"

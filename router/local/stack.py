"""``turnout up``: Redis, one worker per Turnout version the experiments name, and the gateway.

While it runs it follows the experiment files: a local Turnout variant added (``turnout retrain
--deploy``, an edit) gets its worker, one removed has its worker stopped.

Variants of other protocols (BentoML, MLServer, MLflow, any JSON service) are run by their own
tools: ``turnout up`` starts nothing for them, waits a bounded time for them to be ready, and
says which are not.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from router.config.loader import LoadReport
from router.config.resolve import load_directory
from router.core.errors import ConfigError
from router.core.settings import Settings
from router.core.state import LOCAL_ADMIN, StackInfo, StateFolder, admin_tokens_configured
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


@dataclass
class Child:
    """A supervised process of the stack: how to start it again and how to know it is ready."""

    name: str
    launch: Callable[[], ManagedProcess | None]
    """Start the process (None for Redis, which ``EmbeddedRedis`` starts and waits for)."""
    ready_url: str | None
    ready_timeout: float
    process: ManagedProcess | None = None
    exits: deque[float] = field(default_factory=deque)
    """When it exited on its own, within the restart window."""
    restart_at: float | None = None


class Stack:
    """Redis, the workers and the gateway: started in order, then supervised.

    A child that exits on its own is restarted with exponential backoff (``stack_restart_
    backoff`` doubling) and the restart is announced; one that exits more than
    ``stack_restart_limit`` times within ``stack_restart_window`` seconds stops the whole stack
    with a message naming it. The embedded Redis restarts on the same port from its
    append-only file, so what it held is still there.
    """

    def __init__(self, settings: Settings, workdir: Path | None = None) -> None:
        self.settings = settings
        self.workdir = workdir or settings.state_dir
        self.state = StateFolder(self.workdir)
        self.children: list[Child] = []
        self.redis: EmbeddedRedis | None = None
        self.workers: dict[WorkerSpec, Child] = {}
        self.failed: set[WorkerSpec] = set()
        """Workers added while running that did not start: not tried again while still named."""
        self.env: dict[str, str] = {}
        """What the children get on top of this process's environment (set by ``start``)."""
        self._reconciled_at = 0.0

    @property
    def processes(self) -> list[ManagedProcess]:
        return [c.process for c in self.children if c.process is not None]

    def start(self, say: Callable[[str], object] = print) -> str:
        settings = self.settings
        specs = workers_needed(settings, say)
        env: dict[str, str] = {}
        redis_url = settings.redis_url
        if not redis_configured(settings):  # else the children inherit TURNOUT_REDIS_*
            self.redis = EmbeddedRedis(
                self.workdir / "redis", port=settings.redis_port, appendonly=True
            )
            child = Child("redis", self._start_redis, None, 10.0)
            self.children.append(child)
            self._start_redis()
            redis_url = self.redis.url
            env["TURNOUT_REDIS_URL"] = redis_url
            say(f"redis ready at {redis_url} (embedded, append-only file in {self.redis.workdir})")
        if redis_url is not None:  # Sentinel or Cluster: replicas need the same settings
            self.state.write_stack(StackInfo(redis_url, os.getpid()))
        salt = (
            settings.user_hash_salt
            if "user_hash_salt" in settings.model_fields_set
            else self.state.make_salt()
        )
        env |= {"TURNOUT_STATE_DIR": str(self.workdir), "TURNOUT_USER_HASH_SALT": salt}
        if "feedback_secret" not in settings.model_fields_set:
            env["TURNOUT_FEEDBACK_SECRET"] = self.state.make_feedback_secret()
        self.env = env
        workers = [self._worker(spec) for spec in specs]
        for child in workers:
            self._wait(child)
            say(f"{child.name} ready at {str(child.ready_url).removesuffix('/readyz')}")
        url = f"http://{settings.host}:{settings.port}"
        admin = None
        gateway_env = dict(env)
        if admin_tokens_configured(settings):
            self.state.clear_admin_token()  # a previous run's: the configured tokens win
        else:
            admin = self.state.make_admin_token(url)
            gateway_env["TURNOUT_ADMIN_TOKENS"] = json.dumps({LOCAL_ADMIN: admin.token})
        argv = [sys.executable, "-m", "router", "gateway", "--port", str(settings.port)]
        log = self.workdir / "logs" / "gateway.log"
        launch = self._launcher("gateway", argv, gateway_env, log)
        gateway = Child("gateway", launch, f"{url}/healthz", 60.0, launch())
        self.children.append(gateway)
        self._wait(gateway)
        external = external_servers(settings)
        if external:
            self._report_external(url, external, say)
        if http_ok(f"{url}/readyz"):
            say(f"gateway ready at {url}")
        else:
            say(f"gateway up at {url} but NOT READY: {readiness(url)}")
        if admin is not None:  # printed this once; the CLI reads it from the state folder
            say(
                f"admin token {admin.token} (made for this run, kept in "
                f"{self.state.admin_token_file}; `turnout` commands use it for {url})"
            )
        if settings.ui != "off":
            say(f"console at {url}/ui/")
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

    def _worker(self, spec: WorkerSpec) -> Child:
        """Start the worker of ``spec`` (not waiting for it) and supervise it."""
        argv = [sys.executable, "-m", "router", "worker", "--model", spec.model]
        argv += ["--version", spec.version, "--port", str(spec.port), "--host", spec.host]
        name = f"worker {spec.model} {spec.version}"
        log = self.workdir / "logs" / f"worker-{spec.version}.log"
        launch = self._launcher(name, argv, self.env, log)
        ready = f"http://{spec.host}:{spec.port}/readyz"
        child = Child(name, launch, ready, 120.0, launch())
        self.children.append(child)
        self.workers[spec] = child
        return child

    def reconcile(self, say: Callable[[str], object] = print) -> None:
        """Start the workers the experiments name now and the stack does not run; stop the ones
        no experiment names any more. Files that fail to load keep their workers (the gateway
        serves their last good version)."""
        try:
            wanted = set(workers_needed(self.settings, say=lambda _: None))
        except ConfigError as exc:  # two versions on one port: change nothing until fixed
            say(f"workers unchanged: {exc.detail}")
            return
        self.failed &= wanted
        for spec in [s for s in self.workers if s not in wanted]:
            child = self.workers.pop(spec)
            self.children.remove(child)
            if child.process is not None:
                child.process.stop()
            say(f"{child.name} stopped (no experiment names it any more)")
        for spec in sorted(wanted - self.workers.keys() - self.failed, key=lambda s: s.port):
            child = self._worker(spec)
            try:
                self._wait(child)
            except RuntimeError as exc:
                self.workers.pop(spec)
                self.children.remove(child)
                if child.process is not None:
                    child.process.stop()
                self.failed.add(spec)
                say(f"{child.name} added but not started: {exc}")
                continue
            say(f"{child.name} started at {str(child.ready_url).removesuffix('/readyz')}")

    def _launcher(
        self, name: str, argv: list[str], env: dict[str, str], log_path: Path
    ) -> Callable[[], ManagedProcess]:
        return lambda: ManagedProcess(name, argv, env=env, log_path=log_path).start()

    def _start_redis(self) -> None:
        assert self.redis is not None
        self.redis.stop()  # a process that exited on its own: close its log
        self.redis.start()
        self.children[0].process = self.redis.process

    def _wait(self, child: Child) -> None:
        proc = child.process
        assert proc is not None
        if child.ready_url is None:
            return
        url = child.ready_url
        try:
            poll_until(
                lambda: http_ok(url) or not proc.alive(), child.ready_timeout, what=proc.name
            )
        except TimeoutError:
            raise RuntimeError(f"{proc.name} did not become ready; see {proc.log_path}") from None
        if not proc.alive():
            tail = proc.output()[-2000:]
            raise RuntimeError(f"{proc.name} exited during start-up:\n{tail}")

    def stop(self) -> None:
        for child in reversed(self.children):
            if child.name != "redis" and child.process is not None:
                child.process.stop()
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        self.children.clear()
        self.workers.clear()
        self.state.clear_stack()
        self.state.clear_admin_token()

    def supervise(self, say: Callable[[str], object] = print) -> None:
        """One round: restart children that exited and whose backoff is over; raise
        ``RuntimeError`` when one exits too often (the caller stops the stack)."""
        settings = self.settings
        now = time.monotonic()
        for child in self.children:
            proc = child.process
            if child.restart_at is None:
                if proc is None or proc.alive():
                    continue
                code = proc.proc.returncode if proc.proc else None
                child.exits.append(now)
                while child.exits and now - child.exits[0] > settings.stack_restart_window:
                    child.exits.popleft()
                if len(child.exits) > settings.stack_restart_limit:
                    raise RuntimeError(
                        f"{child.name} exited {len(child.exits)} times within "
                        f"{settings.stack_restart_window:g}s (last code {code}); stopping the "
                        f"stack. See {proc.log_path}"
                    )
                delay = settings.stack_restart_backoff * 2 ** (len(child.exits) - 1)
                say(f"{child.name} exited (code {code}); restarting in {delay:g}s")
                child.restart_at = now + delay
            elif now >= child.restart_at:
                child.restart_at = None
                started = child.launch()
                if started is not None:
                    child.process = started
                self._wait(child)
                assert child.process is not None
                say(f"{child.name} restarted (pid {child.process.pid})")

    def watch(self, say: Callable[[str], object] = print) -> None:
        """Supervise until Ctrl-C / SIGTERM."""
        stopping = False

        def on_signal(signum: int, _: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        while not stopping:
            self.supervise(say)
            if time.monotonic() - self._reconciled_at >= self.settings.stack_reconcile_interval:
                self.reconcile(say)
                self._reconciled_at = time.monotonic()
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

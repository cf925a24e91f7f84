"""Fixtures that start real things: trained models, redis-server, worker processes."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from model_workers.recipes import RECIPES, WINE_RECIPES
from model_workers.train import load_dataset, load_wine_dataset, train
from router.core.settings import Settings
from router.local.processes import ManagedProcess, free_port, http_ok, poll_until
from router.local.redis_server import EmbeddedCluster, EmbeddedRedis, RedisTopology

SAMPLE_ROWS = 4000


@pytest.fixture(autouse=True)
def own_state_folder(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every test's in-process settings (and the processes it starts without saying otherwise)
    get a state folder of their own: never the developer's .turnout/, nor another test's
    last-good files, salt or flags."""
    monkeypatch.setenv("TURNOUT_STATE_DIR", str(tmp_path_factory.mktemp("state")))


def requires_ci_tool(found: bool, tool: str) -> None:
    """Skip on a laptop without ``tool``; never skip in CI."""
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} is required in CI but was not found")
        pytest.skip(f"{tool} not installed")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Profanity v1, v2 and v3 trained on a sample of the real data (fast, but real models),
    and wine v1 and v2 on the wine data that ships with scikit-learn."""
    root = tmp_path_factory.mktemp("models")
    dataset = load_dataset(Settings().dataset, limit=SAMPLE_ROWS)
    for name in ("v1", "v2", "v3"):
        train(RECIPES[name], name, dataset, root)
    wine = load_wine_dataset()
    for name in WINE_RECIPES:
        train(WINE_RECIPES[name], name, wine, root, "wine")
    return root


def topologies() -> list[str]:
    """Redis topologies the shared fixture runs on: one instance and a 3+3 cluster. A laptop
    may narrow it (``TURNOUT_TEST_TOPOLOGIES=single``); CI always runs both."""
    chosen = os.environ.get("TURNOUT_TEST_TOPOLOGIES", "single,cluster").split(",")
    if os.environ.get("CI") == "true":
        return ["single", "cluster"]
    return [t for t in ("single", "cluster") if t in chosen]


@pytest.fixture(scope="session", params=topologies())
def redis_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisTopology]:
    """The Redis that recording, feedback, bandit, flags and shadow tests share: each of them
    runs once on one instance and once on a real cluster (three primaries, three replicas)."""
    server: RedisTopology
    if request.param == "cluster":
        server = EmbeddedCluster(tmp_path_factory.mktemp("redis-cluster"))
    else:
        server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@dataclass
class Worker:
    version: str
    url: str
    process: ManagedProcess


WorkerFactory = Callable[..., Worker]


@pytest.fixture(scope="module")
def start_worker(
    models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerFactory]:
    """Start worker processes that live until the end of the test module."""
    tmp_path = tmp_path_factory.mktemp("workers")
    started: list[Worker] = []

    def start(
        version: str, wait_ready: bool = True, model: str = "profanity", **env: str
    ) -> Worker:
        port = free_port()
        argv = [sys.executable, "-m", "router", "worker", "--model", model, "--version", version]
        process = ManagedProcess(
            f"worker-{model}-{version}",
            [*argv, "--port", str(port)],
            env={"TURNOUT_MODELS_DIR": str(models_dir), **env},
            log_path=tmp_path / f"worker-{version}-{port}.log",
        ).start()
        worker = Worker(version, f"http://127.0.0.1:{port}", process)
        started.append(worker)
        if wait_ready:
            poll_until(
                lambda: http_ok(f"{worker.url}/readyz") or not process.alive(),
                30,
                what=f"worker {version}",
            )
            assert process.alive(), process.output()
        return worker

    yield start
    for worker in started:
        worker.process.stop()


@dataclass
class Gateway:
    url: str
    process: ManagedProcess
    experiments_dir: Path


GatewayFactory = Callable[..., Gateway]


def write_experiment(directory: Path, text: str, name: str = "experiment.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)  # atomic, so a watcher never reads half a file
    return path


def canary_yaml(workers: dict[str, str], weights: dict[str, int], **extra: str) -> str:
    """A canary experiment over ``workers`` (variant -> url), control = first variant."""
    control = next(iter(workers))
    lines = [
        f"name: {extra.get('name', 'exp')}",
        f"model: {extra.get('model', 'profanity')}",
        f"control: {control}",
        "variants:",
        *[f"  {v}: {{url: '{u}'}}" for v, u in workers.items()],
        "policy:",
        f"  kind: {extra.get('kind', 'canary')}",
        "  weights: {" + ", ".join(f"{v}: {w}" for v, w in weights.items()) + "}",
    ]
    if "sticky" in extra:
        lines.append(f"  sticky: {extra['sticky']}")
    if "tail" in extra:
        lines.append(extra["tail"])
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def start_gateway(
    tmp_path_factory: pytest.TempPathFactory, models_dir: Path
) -> Iterator[GatewayFactory]:
    """Start gateway processes (module lifetime) on an experiments folder of the test's own."""
    tmp_path = tmp_path_factory.mktemp("gateways")
    started: list[Gateway] = []

    def start(experiments_dir: Path, wait_ready: bool = True, **env: str) -> Gateway:
        port = free_port()
        if "TURNOUT_REDIS_URL" not in env:
            env = {"TURNOUT_NO_REDIS": "true", **env}  # said out loud: a gateway never guesses
        process = ManagedProcess(
            "gateway",
            [sys.executable, "-m", "router", "gateway", "--port", str(port)],
            env={
                "TURNOUT_EXPERIMENTS_DIR": str(experiments_dir),
                "TURNOUT_MODELS_DIR": str(models_dir),
                "TURNOUT_HEALTH_INTERVAL": "0.5",
                "TURNOUT_RELOAD_POLL_INTERVAL": "0.2",
                # A state folder of its own: never the developer's .turnout/, nor another test's.
                "TURNOUT_STATE_DIR": str(tmp_path / f"state-{port}"),
                **env,
            },
            log_path=tmp_path / f"gateway-{port}.log",
        ).start()
        gateway = Gateway(f"http://127.0.0.1:{port}", process, experiments_dir)
        started.append(gateway)
        poll_until(
            lambda: (
                http_ok(f"{gateway.url}/{'readyz' if wait_ready else 'healthz'}")
                or not process.alive()
            ),
            60,
            what="gateway",
        )
        assert process.alive(), process.output()
        return gateway

    yield start
    for gateway in started:
        gateway.process.stop()

"""``turnout up`` follows the experiment files while it runs: a local Turnout variant added gets
its worker (real processes), one removed has its worker stopped, a worker that cannot start is
said and not retried, and a file naming two versions on one port changes nothing."""

from __future__ import annotations

from pathlib import Path

from router.core.settings import Settings
from router.local.processes import free_port, http_ok
from router.local.stack import Stack
from tests.conftest import canary_yaml, write_experiment


def test_workers_follow_the_experiment_files(models_dir: Path, tmp_path: Path) -> None:
    experiments = tmp_path / "experiments"
    ports = {v: free_port() for v in ("v1", "v2", "v9")}
    url = {v: f"http://127.0.0.1:{p}" for v, p in ports.items()}
    write_experiment(experiments, canary_yaml({"v1": url["v1"]}, {"v1": 100}))
    settings = Settings(
        models_dir=models_dir, experiments_dir=experiments, state_dir=tmp_path / "state"
    )
    stack = Stack(settings)
    stack.env = {"TURNOUT_MODELS_DIR": str(models_dir)}
    said: list[str] = []
    try:
        stack.reconcile(said.append)
        assert said == [f"worker profanity v1 started at {url['v1']}"]
        assert http_ok(f"{url['v1']}/readyz")
        v1 = stack.processes[0]

        said.clear()
        two = {"v1": url["v1"], "v2": url["v2"]}
        write_experiment(experiments, canary_yaml(two, {"v1": 100, "v2": 0}))
        stack.reconcile(said.append)
        assert said == [f"worker profanity v2 started at {url['v2']}"]
        assert http_ok(f"{url['v2']}/readyz") and v1.alive()

        said.clear()
        write_experiment(experiments, canary_yaml({"v2": url["v2"]}, {"v2": 100}))
        stack.reconcile(said.append)
        assert said == ["worker profanity v1 stopped (no experiment names it any more)"]
        assert not v1.alive() and [c.name for c in stack.children] == ["worker profanity v2"]

        said.clear()
        missing = {"v2": url["v2"], "v9": url["v9"]}
        write_experiment(experiments, canary_yaml(missing, {"v2": 100, "v9": 0}))
        stack.reconcile(said.append)
        assert len(said) == 1 and said[0].startswith("worker profanity v9 added but not started")
        stack.reconcile(said.append)  # not tried again while the file still names it
        assert len(said) == 1 and [c.name for c in stack.children] == ["worker profanity v2"]

        said.clear()
        write_experiment(
            experiments, canary_yaml({"v2": url["v2"]}, {"v2": 100}), name="other.yaml"
        )
        clash = canary_yaml({"v1": url["v2"]}, {"v1": 100}, name="clash", model="other")
        write_experiment(experiments, clash, name="clash.yaml")
        (experiments / "experiment.yaml").unlink()
        stack.reconcile(said.append)
        assert len(said) == 1 and said[0].startswith("workers unchanged: "), said
        assert f":{ports['v2']} is named for both" in said[0]
        assert [c.name for c in stack.children] == ["worker profanity v2"]
    finally:
        stack.stop()

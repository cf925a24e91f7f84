"""The loop the project closes, with real processes and small sizes: ``turnout up`` serves v1 and
captures every request with its text; traffic whose slang changed comes in with feedback; the
drift check flags v1; ``turnout retrain --deploy shadow`` trains v2 on the captured labelled
traffic, which beats v1 on the recent window, and ``turnout up`` starts v2's worker so it serves
shadow comparisons; then ``turnout retrain --deploy rollout`` brings v3 in through a rollout that
carries it to 100% (promoted: the file says v3 is the control).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from model_workers.recipes import RECIPES
from model_workers.train import load_dataset, train
from router.local.processes import ManagedProcess, free_port, poll_until
from tests.loop_support import LoopData, sample_dataset, shifted

TOKEN = "loop-admin-token-0123456789"
NAME = "loop"
FAST = {
    "TURNOUT_HEALTH_INTERVAL": "0.5",
    "TURNOUT_RELOAD_POLL_INTERVAL": "0.2",
    "TURNOUT_CAPTURE_FLUSH_INTERVAL": "0.1",
    "TURNOUT_RECORDING_FLUSH_INTERVAL": "0.05",
    "TURNOUT_DRIFT_REFRESH_INTERVAL": "0.5",
    "TURNOUT_ROLLOUT_CHECK_INTERVAL": "0.2",
    "TURNOUT_ROLLOUT_REFRESH_INTERVAL": "0.2",
    "TURNOUT_ROLLOUT_LEASE_TTL": "2",
    "TURNOUT_ROLLOUT_SLOT_SECONDS": "1",
    "TURNOUT_STACK_RECONCILE_INTERVAL": "0.5",
    "TURNOUT_ACCESS_LOG": "false",
}


@dataclass
class Loop:
    url: str
    env: dict[str, str]
    data: LoopData
    experiment: Path
    models: Path
    stack: ManagedProcess
    next_tweet: int = 0

    def cli(self, *args: str) -> tuple[int, str]:
        done = subprocess.run(
            [sys.executable, "-m", "router", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        return done.returncode, done.stdout + done.stderr

    def traffic(self, count: int, feedback: bool = True) -> list[dict[str, Any]]:
        """``count`` shifted tweets through the gateway, each with its true label as feedback."""
        answers = []
        with httpx.Client(base_url=self.url, timeout=10) as client:
            for tweet in self.data.traffic[self.next_tweet : self.next_tweet + count]:
                body = {"text": shifted(tweet.text), "user_id": uuid.uuid4().hex}
                response = client.post("/predict", json=body)
                assert response.status_code == 200, response.text
                answer = response.json()
                answers.append(answer)
                if feedback:
                    done = client.post(
                        "/feedback",
                        json={"request_id": answer["request_id"], "label": tweet.label},
                    )
                    assert done.status_code in (200, 202), done.text
            self.next_tweet += count
        return answers


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    root = tmp_path_factory.mktemp("loop-e2e")
    data = sample_dataset(root / "data")
    models = root / "models"
    train(RECIPES["v1"], "v1", load_dataset(data.base), models)
    experiments = root / "experiments"
    experiments.mkdir()
    path = experiments / "loop.yaml"
    path.write_text(
        f"name: {NAME}\nmodel: profanity\ncontrol: v1\n"
        f"variants:\n  v1: {{url: 'http://127.0.0.1:{free_port()}'}}\n"
        "policy: {kind: blue_green, active: v1}\n"
        "capture: {sample: 1.0, inputs: true}\n"
        "retrain:\n"
        "  rollout:\n"
        "    steps: [50, 100]\n"
        "    interval: 1s\n"
        "    min_samples: 100\n"
        "    gates:\n"
        "      - {metric: error_rate, max_increase: 0.2}\n"
    )
    port = free_port()
    env = {
        "TURNOUT_PORT": str(port),
        "TURNOUT_REDIS_PORT": str(free_port()),
        "TURNOUT_STATE_DIR": str(root / "state"),
        "TURNOUT_EXPERIMENTS_DIR": str(experiments),
        "TURNOUT_MODELS_DIR": str(models),
        "TURNOUT_DATASET": str(data.base),
        "TURNOUT_ADMIN_TOKENS": json.dumps({"loop": TOKEN}),
        "TURNOUT_ADMIN_TOKEN": TOKEN,
        **FAST,
    }
    stack = ManagedProcess(
        "turnout up",
        [sys.executable, "-m", "router", "up"],
        env=env,
        log_path=root / "up.log",
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        poll_until(
            lambda: "gateway ready at" in stack.output() or not stack.alive(),
            120,
            what="turnout up",
        )
        assert stack.alive(), stack.output()
        yield Loop(url, {**os.environ, **env}, data, path, models, stack)
    finally:
        stack.stop(timeout=30)


def experiments(loop: Loop) -> dict[str, Any]:
    body = httpx.get(f"{loop.url}/experiments", timeout=5).json()
    return next(e for e in body["experiments"] if e["name"] == NAME)


def test_drift_flags_the_live_version(loop: Loop) -> None:
    loop.traffic(500)
    poll_until(
        lambda: len(list((Path(loop.env["TURNOUT_STATE_DIR"]) / "capture" / NAME).glob("*"))) > 1,
        10,
        what="capture files",
    )
    code, out = loop.cli("drift", NAME, "--current", "30m", "--json")
    assert code == 3, out
    report = json.loads(out[out.index("{") : out.rindex("}") + 1])
    v1 = next(c for c in report["checks"] if c["version"] == "v1")
    assert v1["verdict"] == "drift" and v1["distances"]["n_current"] == 500
    assert report["input"]["verdict"] == "drift" and Path(report["html"]).is_file()

    def exported() -> bool:
        text = httpx.get(f"{loop.url}/metrics", timeout=5).text
        return f'turnout_drift{{check="prediction",experiment="{NAME}",version="v1"}} 1.0' in text

    poll_until(exported, 10, what="the drift gauge")
    served = httpx.get(f"{loop.url}/experiments/{NAME}/drift", timeout=5).json()
    assert served["drift"] is True and served["html"] == report["html"]


def test_retrain_deploys_a_better_shadow(loop: Loop) -> None:
    worker = f"http://127.0.0.1:{free_port()}"
    code, out = loop.cli(
        "retrain", NAME, "--recipe", "v1", "--as", "v2", "--window", "30m",
        "--deploy", "shadow", "--worker-url", worker, "--json", "--url", loop.url,
    )  # fmt: skip
    assert code == 0, out
    result = json.loads(out[out.index("{") : out.rindex("}") + 1])
    recent = result["evaluation"]["recent"]
    assert result["evaluation"]["accepted"] and recent["interval"][0] > 0, recent
    assert recent["auc_candidate"] > recent["auc_production"]
    assert result["deploy"]["as"] == "shadow"
    exp = experiments(loop)
    assert exp["shadow"]["targets"] == ["v2"] and exp["upstreams"]["v2"]["ready"]
    loop.traffic(60, feedback=False)

    def compared() -> int:
        report = httpx.get(f"{loop.url}/experiments/{NAME}/shadow", timeout=5).json()
        return sum(p["pairs"] for p in report["pairs"] if p["shadow"] == "v2")

    poll_until(lambda: compared() >= 60, 20, what="shadow comparisons of v2")


def test_retrain_rollout_carries_the_new_version_to_100(loop: Loop) -> None:
    loop.traffic(100)
    worker = f"http://127.0.0.1:{free_port()}"
    code, out = loop.cli(
        "retrain", NAME, "--recipe", "v1", "--as", "v3", "--window", "30m",
        "--deploy", "rollout", "--worker-url", worker, "--json", "--url", loop.url,
    )  # fmt: skip
    assert code == 0, out
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(base_url=loop.url, timeout=10) as client:
            i = 0
            while not stop.is_set():
                client.post("/predict", json={"text": f"hello there {i}", "user_id": f"u{i}"})
                i += 1

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    try:
        poll_until(
            lambda: yaml.safe_load(loop.experiment.read_text()).get("control") == "v3",
            120,
            interval=0.5,
            what="the rollout to promote v3",
        )
    finally:
        stop.set()
        sender.join(10)
    data = yaml.safe_load(loop.experiment.read_text())
    assert data["policy"] == {"kind": "blue_green", "active": "v3"}
    history = httpx.get(f"{loop.url}/experiments/{NAME}/rollout", timeout=5).json()
    assert [h["action"] for h in history.get("history", [])][-1] == "promote"
    poll_until(lambda: experiments(loop)["control"] == "v3", 10, what="the promoted file")

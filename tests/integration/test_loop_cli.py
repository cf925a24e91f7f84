"""turnout drift and turnout retrain on real captured files, a real Redis, real models trained
on a random sample of the tweets: exit codes, verdicts, skipped lines, refusal and --force."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from model_workers import registry
from model_workers.recipes import RECIPES
from model_workers.train import load_dataset, train
from router.capture import files
from router.cli import app
from router.drift import inputs
from router.local.processes import ManagedProcess, poll_until
from router.local.redis_server import RedisTopology
from router.storage import keys
from tests.conftest import requires_ci_tool
from tests.loop_support import (
    LoopData,
    Tweet,
    captured_line,
    feedback_fields,
    sample_dataset,
    shifted,
)

DB = 12
runner = CliRunner()


@dataclass
class World:
    data: LoopData
    env: dict[str, str]
    capture: Path
    models: Path
    redis: redis.Redis | redis.RedisCluster

    def run(self, *args: str) -> tuple[int, str]:
        result = runner.invoke(app, list(args), env=self.env)
        return result.exit_code, result.output

    def capture_file(self, tweets: list[Tweet], start: float, shift: bool = False) -> list[str]:
        """Captured outcomes of v1 for these tweets, one per second from ``start``."""
        model = registry.load(self.models, "profanity", "v1")
        texts = [shifted(t.text) if shift else t.text for t in tweets]
        scores = model.predict_scores(texts)
        ids = [uuid.uuid4().hex for _ in texts]
        folder = self.capture / "exp"
        folder.mkdir(parents=True, exist_ok=True)
        name = files.file_name(start, uuid.uuid4().hex[:8], 1).replace(".part", "")
        lines = [
            captured_line(rid, start + i, "v1", score, text)
            for i, (rid, score, text) in enumerate(zip(ids, scores, texts, strict=True))
        ]
        (folder / name).write_bytes(b"".join(lines))
        return ids

    def label(self, ids: list[str], tweets: list[Tweet]) -> None:
        for rid, tweet in zip(ids, tweets, strict=True):
            self.redis.xadd(keys.feedback("exp"), feedback_fields(rid, tweet.label))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisTopology) -> Iterator[World]:
    root = tmp_path_factory.mktemp("loop")
    data = sample_dataset(root / "data")
    models = root / "models"
    train(RECIPES["v1"], "v1", load_dataset(data.base), models)
    experiments = root / "experiments"
    experiments.mkdir()
    (experiments / "exp.yaml").write_text(
        "name: exp\nmodel: profanity\ncontrol: v1\n"
        "variants: {v1: {url: 'http://127.0.0.1:8101'}}\n"
        "policy: {kind: blue_green, active: v1}\n"
        "capture: {sample: 1.0, inputs: true}\n"
    )
    server = redis_server.with_db(DB)
    client = server.client()
    client.delete(keys.drift("exp"), keys.feedback("exp"))
    env = {
        "TURNOUT_DATASET": str(data.base),
        "TURNOUT_MODELS_DIR": str(models),
        "TURNOUT_EXPERIMENTS_DIR": str(experiments),
        "TURNOUT_STATE_DIR": str(root / "state"),
        **server.env,
    }
    yield World(data, env, root / "state" / "capture", models, client)
    client.close()


def test_drift_exit_codes_verdicts_and_report(world: World, tmp_path: Path) -> None:
    requires_ci_tool(inputs.evidently_installed(), "evidently (pip install 'turnout[drift]')")
    now = time.time()
    world.capture_file(world.data.traffic[:400], now - 3000)
    html = tmp_path / "steady.html"
    code, out = world.run("drift", "exp", "--current", "1h", "--json", "--html", str(html))
    assert code == 0, out
    report = json.loads(out)
    (check,) = report["checks"]
    assert (check["version"], check["check"], check["verdict"]) == ("v1", "prediction", "ok")
    assert report["input"]["verdict"] == "ok" and report["html"] == str(html) and html.exists()
    assert report["source"]["kind"] == "capture" and report["source"]["records"] == 400
    world.capture_file(world.data.traffic[400:800], now - 600, shift=True)
    code, out = world.run("drift", "exp", "--current", "15m", "--json")
    assert code == 3, out
    report = json.loads(out)
    (check,) = report["checks"]
    assert check["verdict"] == "drift" and check["distances"]["psi"] >= 0.1
    assert check["positive_rate_current"] < check["positive_rate_reference"]
    assert report["input"]["verdict"] == "drift"
    stored = world.redis.hgetall(keys.drift("exp"))
    assert json.loads(stored["v1|prediction"])["verdict"] == "drift"
    assert json.loads(stored["all|input"])["verdict"] == "drift"
    assert json.loads(stored["run"])["drift"] is True


def test_corrupt_and_truncated_files_are_skipped_and_counted(world: World) -> None:
    now = time.time()
    world.capture_file(world.data.traffic[800:1000], now - 200)
    folder = world.capture / "exp"
    (folder / files.file_name(now - 100, "broken", 1).replace(".part", "")).write_bytes(
        b'{"v": 1, "kind": "outcome"\n\x00\x01garbage\n[]\n{"v": 1, "kind": "outc'
    )
    code, out = world.run("drift", "exp", "--current", "10m", "--json")
    assert code in (0, 3), out
    skipped = json.loads(out)["source"]["skipped"]
    assert skipped == {"corrupt": 3, "truncated": 1}
    code, out = world.run("drift", "exp", "--current", "10m")
    assert "3 corrupt" in " ".join(out.split()) and "1 truncated" in " ".join(out.split())


def test_without_evidently_the_prediction_checks_still_run(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "evidently", None)
    code, out = world.run("drift", "exp", "--current", "2h", "--json")
    assert code in (0, 3)
    text = " ".join(out.split())
    assert "pip install 'turnout[drift]'" in text
    report = json.loads(out[out.index("{") : out.rindex("}") + 1])
    assert report["checks"][0]["verdict"] in ("ok", "drift")
    assert report["input"]["verdict"] == "skipped"


def test_retrain_refuses_with_the_numbers_then_force_is_recorded(world: World) -> None:
    tweets = world.data.traffic[2000:2300]
    ids = world.capture_file(tweets, time.time() - 400)
    world.label(ids, tweets)
    before = sorted(p.name for p in (world.models / "profanity").iterdir())
    code, out = world.run("retrain", "exp", "--recipe", "v1", "--as", "v7", "--window", "1h")
    text = " ".join(out.split())
    assert code == 1, out
    assert "v7 was not registered" in text and "not better on the recent window" in text
    assert "AUC" in text and "n = " in text
    assert sorted(p.name for p in (world.models / "profanity").iterdir()) == before
    code, out = world.run(
        "retrain", "exp", "--recipe", "v1", "--as", "v7", "--window", "1h", "--force", "--json"
    )
    assert code == 0, out
    card = registry.read_card(world.models, "profanity", "v7")
    evaluation = card["evaluation"]
    assert evaluation["forced"] is True and evaluation["accepted"] is False
    assert evaluation["reasons"] and evaluation["production"] == "v1"
    assert evaluation["recent"]["rows"] >= 80 and evaluation["holdout"]["rows"] == 800
    assert card["parent"]["version"] == "v1"
    recent = card["dataset"]["recent"]
    assert recent["rows"] >= 280 and len(recent["sha256"]) == 64 and recent["seconds"] == 3600
    assert card["dataset"]["sha256"] == load_dataset(world.data.base).sha256
    assert 0 <= card["calibration"]["ece"] <= 1 and card["reference"]["rows"] > 0
    assert registry.load(world.models, "profanity", "v7").version == "v7"


def test_every_checks_again_until_stopped(world: World) -> None:
    world.redis.delete(keys.drift("exp"))
    process = ManagedProcess(
        "drift --every",
        [sys.executable, "-m", "router", "drift", "exp", "--current", "2h", "--every", "1s"],
        env=world.env,
        log_path=Path(world.env["TURNOUT_STATE_DIR"]) / "every.log",
    ).start()
    try:
        seen: set[float] = set()

        def checked_twice() -> bool:
            run = world.redis.hget(keys.drift("exp"), "run")
            if run:
                seen.add(json.loads(run)["checked_at"])
            return len(seen) >= 2

        # Each check runs Evidently on the window; on a loaded 2-core machine one check alone
        # has taken most of a minute, so the deadline leaves room for two.
        poll_until(checked_twice, 240, 0.2, what="two scheduled checks")
        assert process.alive()
        os.kill(process.pid, signal.SIGINT)
        # It finishes the check in progress (if any), then stops: at most one more check.
        poll_until(lambda: not process.alive(), 240, what="the scheduler to stop")
        assert process.proc is not None and process.proc.returncode == 0
        log = (Path(world.env["TURNOUT_STATE_DIR"]) / "every.log").read_text()
        assert log.rstrip().endswith("stopped"), log[-500:]
    finally:
        process.stop()

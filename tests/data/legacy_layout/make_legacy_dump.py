"""Make ``dump.rdb``: Redis data written by Turnout before the Cluster-ready key layout.

Run with the last commit of the old layout first on the path (the house refactor, e2ee378):

    mkdir /tmp/turnout-legacy && git archive e2ee378 | tar -x -C /tmp/turnout-legacy
    PYTHONPATH=/tmp/turnout-legacy .venv/bin/python tests/data/legacy_layout/make_legacy_dump.py

It trains two small models, starts two workers, a gateway and a redis-server of that code,
sends predictions and feedback to a canary with a shadow and to a bandit, sets a flag, then
saves the data (``dump.rdb``) and what the old gateway reported (``expected.json``) here.
The RDB's expiry times are absolute dates, so it is not the fixture: turn it into ``keys.jsonl``
at once with ``freeze_keys.py`` (relative TTLs), then delete it.
``tests/integration/test_migrate_keys.py`` migrates that data with today's code.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import httpx

from model_workers.recipes import RECIPES
from model_workers.train import load_dataset, train
from router.core.settings import Settings
from router.local.processes import ManagedProcess, free_port, http_ok, poll_until
from router.local.redis_server import EmbeddedRedis

HERE = Path(__file__).resolve().parent
TOKEN = "legacy-token-0123456789"
CANARY = """name: legacy-canary
model: profanity
control: v1
variants:
  v1: {{url: "{v1}"}}
  v2: {{url: "{v2}"}}
policy:
  kind: canary
  weights: {{v1: 50, v2: 50}}
  sticky: user_id
shadow:
  targets: [v2]
  sample: 1.0
"""
BANDIT = """name: legacy-bandit
model: bandit
control: v1
variants:
  v1: {{url: "{v1}"}}
  v2: {{url: "{v2}"}}
policy:
  kind: bandit
  arms: [v1, v2]
"""


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="turnout-legacy-"))
    models = work / "models"
    data = load_dataset(Settings().dataset, limit=2000)
    for version in ("v1", "v2"):
        train(RECIPES[version], version, data, models)
    redis = EmbeddedRedis(work / "redis").start()
    started: list[ManagedProcess] = []
    try:
        env = {"TURNOUT_MODELS_DIR": str(models)}
        urls = {}
        for version in ("v1", "v2"):
            port = free_port()
            argv = [sys.executable, "-m", "router", "worker", "--version", version]
            proc = ManagedProcess(version, [*argv, "--port", str(port)], env=env).start()
            started.append(proc)
            urls[version] = f"http://127.0.0.1:{port}"
            poll_until(lambda u=urls[version]: http_ok(f"{u}/readyz"), 60, what=version)
        folder = work / "experiments"
        folder.mkdir()
        (folder / "canary.yaml").write_text(CANARY.format(**urls))
        (folder / "bandit.yaml").write_text(BANDIT.format(**urls))
        port = free_port()
        gateway_env = {
            **env,
            "TURNOUT_REDIS_URL": redis.url,
            "TURNOUT_EXPERIMENTS_DIR": str(folder),
            "TURNOUT_ADMIN_TOKENS": json.dumps({"ops": TOKEN}),
            "TURNOUT_SEED": "7",
        }
        argv = [sys.executable, "-m", "router", "gateway", "--port", str(port)]
        started.append(ManagedProcess("gateway", argv, env=gateway_env).start())
        url = f"http://127.0.0.1:{port}"
        poll_until(lambda: http_ok(f"{url}/readyz"), 60, what="gateway")
        texts = [str(t) for t in data.texts[:120]]
        canary = [
            httpx.post(
                f"{url}/models/profanity/predict", json={"text": t, "user_id": f"u{i % 40}"}
            ).json()
            for i, t in enumerate(texts)
        ]
        bandit = [
            httpx.post(f"{url}/models/bandit/predict", json={"text": t}).json() for t in texts[:60]
        ]
        poll_until(
            lambda: "turnout_events_buffered 0.0" in httpx.get(f"{url}/metrics").text,
            30,
            what="the buffer to drain",
        )
        labelled = canary[:50]
        for answer, label in zip(labelled, data.labels[:50], strict=True):
            r = httpx.post(
                f"{url}/feedback", json={"request_id": answer["request_id"], "label": int(label)}
            )
            assert r.status_code == 200, r.text
        for i, answer in enumerate(bandit[:40]):
            r = httpx.post(
                f"{url}/feedback", json={"request_id": answer["request_id"], "reward": i % 2}
            )
            assert r.status_code == 200, r.text
        auth = {"authorization": f"Bearer {TOKEN}"}
        r = httpx.put(
            f"{url}/admin/flags/legacy-canary/shadow_enabled",
            json={"value": False, "reason": "legacy data"},
            headers=auth,
        )
        assert r.status_code == 200, r.text
        expected = {
            "reports": {
                name: httpx.get(f"{url}/experiments/{name}/report").json()
                for name in ("legacy-canary", "legacy-bandit")
            },
            "shadow": httpx.get(f"{url}/experiments/legacy-canary/shadow").json(),
            "with_feedback": [a["request_id"] for a in labelled]
            + [a["request_id"] for a in bandit[:40]],
            "without_feedback": [a["request_id"] for a in canary[50:] + bandit[40:]],
        }
        client = redis.client()
        client.save()
        shutil.copy(work / "redis" / "dump.rdb", HERE / "dump.rdb")
        (HERE / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
        print(f"{client.dbsize()} keys saved to {HERE / 'dump.rdb'}")
    finally:
        for proc in started:
            proc.stop()
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

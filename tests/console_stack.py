"""A real stack for the console's tests: a Redis of its own, three workers, one gateway with an
admin token, three experiments (a rollout with a shadow, a bandit, one to act on), and traffic
with feedback."""

from __future__ import annotations

import json
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from router.local.processes import ManagedProcess, free_port, http_ok, poll_until
from router.local.redis_server import EmbeddedRedis
from router.recording.events import HistoryRetention, Outcome, Tally, count_outcome
from router.storage import keys

TOKEN = "console-test-token-0123456789"
ACTOR = "console"
ROLLOUT = "shop-canary"
BANDIT = "arms"
OPS = "ops"
TEXTS = [
    ("have a nice day", 0),
    ("you are such an idiot", 1),
    ("what a lovely morning for a walk", 0),
    ("shut up you stupid fool", 1),
    ("i love this song so much", 0),
    ("that game last night was wild", 0),
]


def experiments(workers: dict[str, str]) -> dict[str, str]:
    v = workers
    return {
        ROLLOUT: f"""
name: {ROLLOUT}
model: profanity
control: v1
variants:
  v1: {{url: "{v["v1"]}"}}
  v2: {{url: "{v["v2"]}"}}
  v3: {{url: "{v["v3"]}"}}
policy: {{kind: canary, weights: {{v1: 90, v2: 10}}, sticky: user_id}}
shadow: {{targets: [v3], sample: 1.0}}
rollout:
  candidate: v2
  steps: [10, 50, 100]
  interval: 1h
  min_samples: 20
  gates:
    - {{metric: error_rate, max_increase: 0.05}}
    - {{metric: reward, max_decrease: 0.2}}
  on_success: hold
""",
        BANDIT: f"""
name: {BANDIT}
model: arms
control: v1
variants:
  v1: {{url: "{v["v1"]}"}}
  v2: {{url: "{v["v2"]}"}}
  v3: {{url: "{v["v3"]}"}}
policy: {{kind: bandit, arms: [v1, v2, v3], reward: feedback}}
""",
        OPS: f"""
name: {OPS}
model: ops
control: v1
variants:
  v1: {{url: "{v["v1"]}"}}
  v2: {{url: "{v["v2"]}"}}
policy: {{kind: canary, weights: {{v1: 50, v2: 50}}, sticky: user_id}}
""",
    }


FLAGS_FILE = """
defaults: {kill_switch: false, shadow_enabled: true, forced_variant: null, frozen: false}
custom: {banner: ""}
experiments: {}
"""


@dataclass
class ConsoleStack:
    url: str
    redis: redis.Redis
    experiments_dir: Path
    gateway: ManagedProcess
    redis_server: EmbeddedRedis
    extra: list[ManagedProcess]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10.0, follow_redirects=False)

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {TOKEN}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=10.0, **kwargs)

    def flags(self, experiment: str) -> dict[str, Any]:
        body = self.admin("GET", "/admin/flags").json()
        return dict(body["experiments"][experiment]["flags"])

    def audit(self, experiment: str) -> list[dict[str, Any]]:
        body = self.admin("GET", "/admin/flags/history", params={"experiment": experiment})
        return list(body.json()["events"])

    def traffic(self, model: str, n: int, feedback: float = 0.8, seed: int = 0) -> int:
        """``n`` predictions with feedback on most; returns how many were answered."""
        rng = random.Random(seed)
        answered = 0
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            for i in range(n):
                text, label = TEXTS[rng.randrange(len(TEXTS))]
                user = f"user-{rng.randrange(400)}-{i % 7}"
                reply = client.post(
                    f"/models/{model}/predict", json={"text": text, "user_id": user}
                )
                if reply.status_code != 200:
                    continue
                answered += 1
                if rng.random() < feedback:
                    request_id = reply.json()["request_id"]
                    client.post("/feedback", json={"request_id": request_id, "label": label})
        return answered

    def stop(self) -> None:
        for process in [self.gateway, *self.extra]:
            process.stop()
        self.redis.close()
        self.redis_server.stop()


def backfill(
    client: redis.Redis, experiment: str, weights: dict[str, float], now: float, hours: int
) -> int:
    """Past traffic in the history buckets, counted by the recorder's own encoder
    (``count_outcome``), so the charts have hours to draw; returns the requests counted."""
    rng = random.Random(7)
    tally = Tally(HistoryRetention(7 * 86_400, 90 * 86_400))
    names, shares = list(weights), list(weights.values())
    start = now - hours * 3600
    count = 0
    for minute in range(hours * 60):
        ts = start + minute * 60
        for _ in range(8 + rng.randrange(8)):
            variant = rng.choices(names, shares)[0]
            failed = rng.random() < 0.01
            tally_outcome = Outcome(
                request_id=f"backfill-{count}",
                experiment=experiment,
                config_version="backfill",
                variant=variant,
                served_variant=None if failed else variant,
                version=variant,
                sticky=True,
                propensity=weights[variant] / 100.0,
                user_hash=None,
                status=503 if failed else 200,
                latency_ms=rng.uniform(3.0, 9.0) + (2.0 if variant != names[0] else 0.0),
                label=None,
                score=None,
                fallback=False,
                ts=ts + rng.uniform(0, 59),
            )
            count_outcome(tally, tally_outcome)
            count += 1
    history = [c for c in tally.commands() if ":history:" in c[1]]
    with client.pipeline(transaction=False) as pipe:
        for name, key, args in history:
            pipe.execute_command(name, key, *args)
        pipe.execute()
    return count


def start_console_stack(
    root: Path, models_dir: Path, backfill_hours: int = 0, **env: str
) -> ConsoleStack:
    server = EmbeddedRedis(root / "redis", port=free_port()).start()
    extra: list[ManagedProcess] = []
    workers: dict[str, str] = {}
    for version in ("v1", "v2", "v3"):
        port = free_port()
        argv = [sys.executable, "-m", "router", "worker", "--version", version]
        process = ManagedProcess(
            f"worker-{version}",
            [*argv, "--port", str(port)],
            env={"TURNOUT_MODELS_DIR": str(models_dir)},
            log_path=root / f"worker-{version}.log",
        ).start()
        extra.append(process)
        workers[version] = f"http://127.0.0.1:{port}"
    for version, url in workers.items():
        poll_until(lambda u=url: http_ok(f"{u}/readyz"), 60, what=f"worker {version}")
    folder = root / "experiments"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in experiments(workers).items():
        (folder / f"{name}.yaml").write_text(text)
    (root / "flags.yaml").write_text(FLAGS_FILE)
    client = redis.Redis.from_url(server.url, decode_responses=True)
    if backfill_hours:
        import time

        now = time.time()
        backfill(client, ROLLOUT, {"v1": 90.0, "v2": 10.0}, now, backfill_hours)
        backfill(client, BANDIT, {"v1": 30.0, "v2": 45.0, "v3": 25.0}, now, backfill_hours)
        backfill(client, OPS, {"v1": 50.0, "v2": 50.0}, now, backfill_hours)
    port = free_port()
    gateway = ManagedProcess(
        "gateway",
        [sys.executable, "-m", "router", "gateway", "--port", str(port)],
        env={
            "TURNOUT_REDIS_URL": server.url,
            "TURNOUT_EXPERIMENTS_DIR": str(folder),
            "TURNOUT_MODELS_DIR": str(models_dir),
            "TURNOUT_FLAGS_FILE": str(root / "flags.yaml"),
            "TURNOUT_ADMIN_TOKENS": json.dumps({ACTOR: TOKEN}),
            "TURNOUT_HEALTH_INTERVAL": "0.5",
            "TURNOUT_RELOAD_POLL_INTERVAL": "0.2",
            "TURNOUT_ROLLOUT_CHECK_INTERVAL": "0.5",
            "TURNOUT_ROLLOUT_LOOK_INTERVAL": "1",
            "TURNOUT_UI_REFRESH_INTERVAL": "1",
            "TURNOUT_BANDIT_REFRESH_INTERVAL": "0.2",
            **env,
        },
        log_path=root / f"gateway-{port}.log",
    ).start()
    url = f"http://127.0.0.1:{port}"
    poll_until(lambda: http_ok(f"{url}/readyz") or not gateway.alive(), 60, what="gateway")
    assert gateway.alive(), gateway.output()
    stack = ConsoleStack(url, client, folder, gateway, server, extra)
    poll_until(lambda: rollout_started(stack), 30, what="the rollout's first look")
    return stack


def rollout_started(stack: ConsoleStack) -> bool:
    body = httpx.get(f"{stack.url}/experiments/{ROLLOUT}/rollout", timeout=5).json()
    return bool(body["rollout"] and body["rollout"]["phase"] == "running")


def history_total(client: redis.Redis, experiment: str) -> int:
    """Requests counted in an experiment's per-minute buckets, whatever the variant."""
    total = 0
    for key in client.scan_iter(match=keys.history(experiment, "m", 0).rsplit(":", 1)[0] + ":*"):
        for field, value in client.hgetall(key).items():
            if field.endswith(f"|{keys.HIST_ASSIGNED}"):
                total += int(value)
    return total


def unescaped_script(html: str) -> bool:
    """A ``<script>`` tag in a page that is not one of the console's own."""
    own = re.compile(r'<script (type="application/json" id="console-data"|src="/ui/static/)')
    return any(not own.match(tag) for tag in re.findall(r"<script[^>]*", html))

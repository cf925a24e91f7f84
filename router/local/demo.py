"""``turnout up --traffic RATE``: sample requests through the local gateway, so the console has
something to show the moment it opens (``make run`` starts the stack with it).

Text experiments get rows of the training data set (the held-out order does not matter here)
with their true label posted as feedback; experiments that take features get their file's
``sample_input``. Users look like production's: made-up ids whose activity is heavy-tailed
(Pareto), so a few heavy users send a large share of the requests, and each user labels a share
of its answers of its own. The console then shows what real traffic does to the statistics.
"""

from __future__ import annotations

import bisect
import itertools
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from model_workers.train import load_dataset
from router.core.errors import TurnoutError
from router.core.settings import Settings

FALLBACK_TEXTS = [
    ("have a nice day", 0),
    ("what a lovely morning for a walk", 0),
    ("i love this song so much", 0),
    ("you are such an idiot", 1),
    ("shut up you stupid fool", 1),
    ("that game last night was wild", 0),
]
USERS = 2_000
ACTIVITY_TAIL = 1.2
"""Pareto shape of users' activity: 1.2 is common for web traffic (a few users, most requests)."""


class HeavyTailedUsers:
    """Users drawn in proportion to a Pareto activity, each with its own feedback share."""

    def __init__(self, rng: random.Random, count: int = USERS, tail: float = ACTIVITY_TAIL) -> None:
        activity = [rng.paretovariate(tail) for _ in range(count)]
        self.cumulative = list(itertools.accumulate(activity))
        self.feedback = [rng.betavariate(4.0, 1.0) for _ in range(count)]
        self.rng = rng

    def pick(self) -> tuple[str, float]:
        """A user id and the share of its answers it gives feedback on."""
        at = self.rng.random() * self.cumulative[-1]
        index = min(bisect.bisect_right(self.cumulative, at), len(self.cumulative) - 1)
        return f"demo-user-{index}", self.feedback[index]


@dataclass
class DemoTraffic:
    url: str
    rate: float
    settings: Settings
    seed: int = 0
    sent: int = 0
    failed: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> DemoTraffic:
        self._thread = threading.Thread(target=self._run, name="turnout-demo", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _texts(self) -> list[tuple[str, int]]:
        try:
            data = load_dataset(self.settings.dataset, limit=5000)
        except TurnoutError:
            return FALLBACK_TEXTS
        return list(zip(data.texts, data.labels, strict=True))

    def _run(self) -> None:
        rng = random.Random(self.seed)
        users = HeavyTailedUsers(rng)
        texts = self._texts()
        experiments: list[dict[str, Any]] = []
        listed = 0.0
        with httpx.Client(base_url=self.url, timeout=5.0) as client:
            while not self._stop.wait(rng.expovariate(self.rate)):
                if time.monotonic() - listed > 30 or not experiments:
                    try:
                        experiments = client.get("/experiments").json()["experiments"]
                        listed = time.monotonic()
                    except (httpx.HTTPError, ValueError, KeyError):
                        self.failed += 1
                        continue
                if experiments:
                    self._one(client, rng, users, rng.choice(experiments), texts)

    def _one(
        self,
        client: httpx.Client,
        rng: random.Random,
        users: HeavyTailedUsers,
        experiment: dict[str, Any],
        texts: list[tuple[str, int]],
    ) -> None:
        user, feedback_share = users.pick()
        label: int | None = None
        if experiment.get("input", {}).get("kind", "text") == "text":
            text, label = texts[rng.randrange(len(texts))]
            body: dict[str, Any] = {"text": text, "user_id": user}
        elif experiment.get("sample_input"):
            body = {**experiment["sample_input"], "user_id": user}
        else:
            return
        try:
            reply = client.post(f"/models/{experiment['model']}/predict", json=body)
            self.sent += 1
            if reply.status_code != 200:
                self.failed += 1
                return
            if label is not None and rng.random() < feedback_share:
                answer = {"request_id": reply.json()["request_id"], "label": label}
                client.post("/feedback", json=answer)
        except (httpx.HTTPError, ValueError, KeyError):
            self.failed += 1

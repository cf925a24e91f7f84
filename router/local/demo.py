"""``turnout up --traffic RATE``: sample requests through the local gateway, so the console has
something to show the moment it opens (``make run`` starts the stack with it).

Text experiments get rows of the training data set (the held-out order does not matter here)
with their true label posted as feedback; experiments that take features get their file's
``sample_input``. Users are a few hundred made-up ids, so sticky assignment shows.
"""

from __future__ import annotations

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
FEEDBACK_SHARE = 0.8
USERS = 500


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
                    self._one(client, rng, rng.choice(experiments), texts)

    def _one(
        self,
        client: httpx.Client,
        rng: random.Random,
        experiment: dict[str, Any],
        texts: list[tuple[str, int]],
    ) -> None:
        user = f"demo-user-{rng.randrange(USERS)}"
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
            if label is not None and rng.random() < FEEDBACK_SHARE:
                answer = {"request_id": reply.json()["request_id"], "label": label}
                client.post("/feedback", json=answer)
        except (httpx.HTTPError, ValueError, KeyError):
            self.failed += 1

"""How long ``turnout drift`` takes on 100,000 captured events (real CLI process, real Redis).

100,000 captured outcomes of one version over a day (tweets as inputs, scores from the version's
own validation distribution) and, in a second run, 50,000 shadow comparisons too. Timed: the
prediction checks alone (no inputs captured), then with Evidently's input check on its sample
(``TURNOUT_DRIFT_INPUT_ROWS`` a side).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import orjson

from model_workers.recipes import RECIPES
from model_workers.train import Dataset, load_dataset, train
from router.capture import files
from router.core.settings import Settings
from router.local.redis_server import EmbeddedRedis

EXPERIMENT = """\
name: exp
model: profanity
control: v1
variants:
  v1: {{url: "http://127.0.0.1:8101"}}
  v2: {{url: "http://127.0.0.1:8102", version: v1}}
policy: {{kind: blue_green, active: v1}}
capture: {{sample: 1.0, inputs: {inputs}}}
"""


def write_events(
    folder: Path, events: int, pairs: int, texts: list[str], quantiles: list[float]
) -> int:
    rng = np.random.default_rng(1)
    scores = np.interp(rng.random(events), np.linspace(0, 1, len(quantiles)), quantiles)
    now = time.time()
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(events):
        lines.append(
            orjson.dumps(
                {
                    "v": 1,
                    "kind": "outcome",
                    "ts": now - 86_000 + i * 0.8,
                    "request_id": uuid.uuid4().hex,
                    "experiment": "exp",
                    "config_version": "c",
                    "variant": "v1",
                    "served_variant": "v1",
                    "version": "v1",
                    "status": 200,
                    "fallback": False,
                    "label": int(scores[i] >= 0.5),
                    "score": float(scores[i]),
                    "input": {"text": texts[i % len(texts)]},
                }
            )
        )
    for i in range(pairs):
        delta = float(rng.normal(0, 0.05))
        lines.append(
            orjson.dumps(
                {
                    "v": 1,
                    "kind": "shadow",
                    "ts": now - 86_000 + i * 1.6,
                    "request_id": uuid.uuid4().hex,
                    "experiment": "exp",
                    "config_version": "c",
                    "primary": "v1",
                    "shadow": "v2",
                    "primary_version": "v1",
                    "shadow_version": "v2",
                    "primary_score": float(scores[i]),
                    "shadow_score": float(np.clip(scores[i] + delta, 0, 1)),
                    "error": None,
                }
            )
        )
    chunk = 20_000
    size = 0
    for n, start in enumerate(range(0, len(lines), chunk)):
        path = folder / files.file_name(now - 86_000 + n, "bench", n).replace(".part", "")
        data = b"\n".join(lines[start : start + chunk]) + b"\n"
        path.write_bytes(data)
        size += len(data)
    return size


def run(env: dict[str, str]) -> tuple[float, int]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "router", "drift", "exp", "--current", "1d", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode not in (0, 3):
        raise RuntimeError(done.stdout + done.stderr)
    return time.perf_counter() - started, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="turnout-bench-drift-"))
    dataset = load_dataset(Settings().dataset)
    texts = dataset.texts[:]
    random.Random(3).shuffle(texts)
    # A random sample (the file is sorted by text): the version's reference inputs are like the
    # traffic, so the input check measures its cost, not a drift.
    picked = random.Random(5).sample(range(len(dataset.texts)), 4000)
    sample = Dataset(
        [dataset.texts[i] for i in picked],
        [dataset.labels[i] for i in picked],
        dataset.path,
        dataset.sha256,
    )
    card = train(RECIPES["v1"], "v1", sample, work / "models")
    server = EmbeddedRedis(work / "redis").start()
    base = {
        **os.environ,
        "TURNOUT_MODELS_DIR": str(work / "models"),
        "TURNOUT_REDIS_URL": server.url,
    }
    print(f"turnout drift on {args.events:,} captured events (one day, one version)")
    try:
        for label, inputs, pairs in (
            ("prediction checks only", "false", 0),
            ("with 50,000 shadow pairs", "false", args.events // 2),
            ("with Evidently on inputs", "true", 0),
        ):
            case = work / uuid.uuid4().hex[:6]
            (case / "experiments").mkdir(parents=True)
            (case / "experiments" / "exp.yaml").write_text(EXPERIMENT.format(inputs=inputs))
            size = write_events(
                case / "state" / "capture" / "exp",
                args.events,
                pairs,
                texts,
                card["reference"]["quantiles"],
            )
            env = {
                **base,
                "TURNOUT_EXPERIMENTS_DIR": str(case / "experiments"),
                "TURNOUT_STATE_DIR": str(case / "state"),
            }
            seconds, code = run(env)
            print(f"  {label:28s} {seconds:7.2f} s   ({size / 2**20:.1f} MiB read, exit {code})")
    finally:
        server.stop()


if __name__ == "__main__":
    main()

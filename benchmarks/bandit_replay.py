"""End to end: labelled tweets through a bandit gateway, feedback from their true labels.

Starts a Redis, one worker per version (the registry's models) and a gateway whose experiment
is a bandit over them, then replays the models' held-out validation tweets with
``turnout replay --feedback`` in quarters, and prints each quarter's traffic per version, each
version's accuracy on the tweets it answered, and the bandit's report at the end. Prints
numbers, not pass/fail.

    python -m benchmarks.bandit_replay [--arms v1,v2,v3] [--rows 4461] [--refresh 0.5]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from sklearn.model_selection import train_test_split

from benchmarks.harness import models_env, start_gateway, start_worker
from model_workers.train import SEED, VALIDATION_SHARE, load_dataset
from router.core.settings import Settings
from router.local.redis_server import EmbeddedRedis

NAME = "profanity-bandit"


def held_out() -> list[tuple[str, int]]:
    """The validation split the registry's models were scored on (never trained on)."""
    data = load_dataset(Settings().dataset)
    _, texts, _, labels = train_test_split(
        data.texts,
        data.labels,
        test_size=VALIDATION_SHARE,
        random_state=SEED,
        stratify=data.labels,
    )
    return list(zip(texts, labels, strict=True))


def experiment_yaml(urls: dict[str, str]) -> str:
    lines = [
        f"name: {NAME}",
        "model: profanity",
        f"control: {next(iter(urls))}",
        "variants:",
        *[f"  {v}: {{url: '{u}'}}" for v, u in urls.items()],
        "policy:",
        "  kind: bandit",
        f"  arms: [{', '.join(urls)}]",
    ]
    return "\n".join(lines) + "\n"


def replay(url: str, rows: list[tuple[str, int]], workdir: Path) -> dict[str, object]:
    path = workdir / "quarter.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["text", "label"])
        out.writerows(rows)
    argv = [sys.executable, "-m", "router", "replay", str(path), "--label-col", "label"]
    argv += ["--feedback", "--json", "--url", url, "--concurrency", "16"]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arms", default="v1,v2,v3")
    parser.add_argument("--rows", type=int, default=None, help="default: the whole split")
    parser.add_argument("--refresh", type=float, default=0.5, help="posterior refresh, s")
    args = parser.parse_args()
    arms = args.arms.split(",")
    rows = held_out()[: args.rows]
    workdir = Path(tempfile.mkdtemp(prefix="turnout-bandit-replay-"))
    redis = EmbeddedRedis(workdir / "redis").start()
    services = []
    try:
        env = {**models_env(), "TURNOUT_REDIS_URL": redis.url}
        workers = {v: start_worker(v, env) for v in arms}
        services += workers.values()
        folder = workdir / "experiments"
        folder.mkdir()
        (folder / "bandit.yaml").write_text(experiment_yaml({v: w.url for v, w in workers.items()}))
        gateway = start_gateway(
            folder, {**env, "TURNOUT_BANDIT_REFRESH_INTERVAL": str(args.refresh)}
        )
        services.append(gateway)
        quarter = -(-len(rows) // 4)
        correct = dict.fromkeys(arms, 0)
        answered = dict.fromkeys(arms, 0)
        print(f"replaying {len(rows)} held-out tweets over arms {arms}, feedback from labels")
        for q in range(4):
            summary = replay(gateway.url, rows[q * quarter : (q + 1) * quarter], workdir)
            by_version = summary["by_version"]
            assert isinstance(by_version, dict)
            total = sum(by_version.values()) or 1
            shares = ", ".join(f"{v} {100 * by_version.get(v, 0) / total:.1f}%" for v in arms)
            print(f"  quarter {q + 1}: {shares}")
            accuracy = summary["accuracy"]
            assert isinstance(accuracy, dict)
            for v in arms:
                n = by_version.get(v, 0)
                answered[v] += n
                correct[v] += round(accuracy.get(v, 0.0) * n)
        report = httpx.get(f"{gateway.url}/experiments/{NAME}/report", timeout=30).json()
        print("  version  answered  accuracy  posterior mean  P(best)  share now")
        for arm in report["bandit"]["arms"]:
            v = arm["arm"]
            acc = correct[v] / answered[v] if answered[v] else float("nan")
            print(
                f"  {v:<8}{answered[v]:>9}{acc:>10.4f}{arm['mean']:>16.4f}"
                f"{arm['prob_best']:>9.3f}{arm['traffic_share']:>11.3f}"
            )
        print(f"  expected regret so far: {report['bandit']['expected_regret']:.1f} requests")
    finally:
        for service in services:
            service.process.stop()
        redis.stop()


if __name__ == "__main__":
    main()

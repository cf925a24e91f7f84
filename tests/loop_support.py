"""Data for tests of the loop (capture, drift, retrain): a random sample of the Davidson tweets
as the base data set, the rest as traffic, and the synthetic shift the issue describes."""

from __future__ import annotations

import csv
import random
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from benchmarks.shifted_traffic import shifted
from router.capture.records import outcome_record
from router.core.settings import Settings
from router.recording.events import Outcome
from router.storage import keys


@dataclass(frozen=True)
class Tweet:
    text: str
    label: int


@dataclass(frozen=True)
class LoopData:
    base: Path
    """A CSV of ``base_rows`` random tweets (the Davidson columns): what the models train on."""
    traffic: list[Tweet]
    """Other tweets, in random order: what clients send."""


def sample_dataset(folder: Path, base_rows: int = 4000, seed: int = 20170101) -> LoopData:
    """The file is sorted by text, so neighbouring rows are alike: sample it at random."""
    with Settings().dataset.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    random.Random(seed).shuffle(rows)
    folder.mkdir(parents=True, exist_ok=True)
    base = folder / "base.csv"
    with base.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows[:base_rows])
    traffic = [Tweet(r["tweet"], 0 if r["class"] == "2" else 1) for r in rows[base_rows:]]
    return LoopData(base, traffic)


def captured_line(rid: str, ts: float, version: str, score: float, text: str) -> bytes:
    outcome = scored_outcome(rid, ts, version, score)
    return orjson.dumps(outcome_record(outcome, {"text": text})) + b"\n"


def scored_outcome(rid: str, ts: float, version: str, score: float) -> Outcome:
    """An answered request of experiment ``exp``: ``version`` gave ``score`` (label at 0.5)."""
    return Outcome(
        request_id=rid,
        experiment="exp",
        config_version="cv",
        variant=version,
        served_variant=version,
        version=version,
        sticky=False,
        propensity=1.0,
        user_hash=None,
        status=200,
        latency_ms=1.0,
        label=int(score >= 0.5),
        score=score,
        fallback=False,
        ts=ts,
    )


def feedback_fields(rid: str, label: int, ts: float | None = None) -> dict[str, str]:
    """A feedback stream entry as ``POST /feedback`` writes it (with a true label)."""
    return {
        "request_id": rid,
        "variant": "v1",
        "credited_variant": "v1",
        "reward": "1.0",
        "fallback": "0",
        "ts": repr(time.time() if ts is None else ts),
        "label": str(label),
        "correct": "1",
    }


__all__ = [
    "LoopData",
    "Tweet",
    "captured_line",
    "feedback_fields",
    "keys",
    "sample_dataset",
    "shifted",
]

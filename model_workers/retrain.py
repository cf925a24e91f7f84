"""Retraining from feedback: the base data plus recent labelled traffic, split so that the
candidate and the production version can be compared on rows neither was trained on.

* The base split is the one every card of the family was measured on (same data, same seed):
  its hold-out is frozen, never trained on by any version.
* The recent rows (captured inputs whose feedback labels arrived in the window) are split
  again, stratified and seeded: the candidate trains on the base training rows and the recent
  training slice; the recent hold-out slice is the second evaluation set.

The evaluation itself (paired, with intervals) and the decision are ``router.reports.evaluation``;
this module only prepares, fits and writes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from sklearn.model_selection import train_test_split

from model_workers.train import SEED, Dataset, TabularDataset, split

RECENT_HOLDOUT_SHARE = 0.3
MIN_RECENT_PER_CLASS = 5
"""Fewest recent rows of each label: fewer cannot be split into both slices."""
MIN_REFERENCE_ROWS = 100
"""A retrained version's drift reference is its recent hold-out slice when it has at least this
many rows (the traffic it was trained for), else the base hold-out."""


@dataclass(frozen=True)
class RecentRows:
    """Captured inputs joined with their feedback labels."""

    inputs: list[Any]
    """Texts, or feature mappings."""
    labels: list[int]
    request_ids: list[str]

    def sha256(self) -> str:
        """A hash of the rows in request-id order (what the card records of them)."""
        rows = sorted(zip(self.request_ids, self.inputs, self.labels, strict=True))
        return hashlib.sha256(orjson.dumps(rows, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True)
class RetrainData:
    base_train: tuple[Any, list[int]]
    base_holdout: tuple[Any, list[int]]
    recent_train: tuple[list[Any], list[int]]
    recent_holdout: tuple[list[Any], list[int]]

    def training(self, dataset: Dataset | TabularDataset) -> tuple[Any, list[int]]:
        """The candidate's training rows: base training rows, then the recent training slice."""
        x, y = self.base_train
        recent_x, recent_y = self.recent_train
        if isinstance(dataset, TabularDataset):
            extra = np.asarray([[row[n] for n in dataset.names] for row in recent_x], float)
            return np.vstack([x, extra]) if len(extra) else x, [*y, *recent_y]
        return [*x, *recent_x], [*y, *recent_y]

    def recent_holdout_inputs(self, dataset: Dataset | TabularDataset) -> Any:
        x, _ = self.recent_holdout
        if isinstance(dataset, TabularDataset):
            return np.asarray([[row[n] for n in dataset.names] for row in x], float)
        return x


def check_recent(recent: RecentRows) -> None:
    counts = {label: recent.labels.count(label) for label in (0, 1)}
    if min(counts.values()) < MIN_RECENT_PER_CLASS:
        raise ValueError(
            f"{len(recent.labels)} labelled recent rows ({counts[0]} labelled 0, {counts[1]} "
            f"labelled 1): at least {MIN_RECENT_PER_CLASS} of each label are needed to train "
            "on some and hold out the others"
        )


def prepare(dataset: Dataset | TabularDataset, recent: RecentRows) -> RetrainData:
    check_recent(recent)
    x_train, x_val, y_train, y_val = split(dataset.inputs, dataset.labels)
    r_train, r_hold, ry_train, ry_hold = train_test_split(
        recent.inputs,
        recent.labels,
        test_size=RECENT_HOLDOUT_SHARE,
        random_state=SEED,
        stratify=recent.labels,
    )
    return RetrainData(
        (x_train, y_train),
        (x_val, y_val),
        (list(r_train), list(ry_train)),
        (list(r_hold), list(ry_hold)),
    )

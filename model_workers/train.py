"""Train a recipe on the Davidson et al. 2017 tweets and write it to the registry with a card."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import scipy
import sklearn
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import train_test_split

from model_workers import recipes as recipes_module
from model_workers.recipes import Recipe
from model_workers.registry import ARTIFACT, CARD, sha256_file, version_dir
from router.core.errors import DatasetError

SEED = 20170101
VALIDATION_SHARE = 0.2
DATA_SOURCE = (
    "Davidson, Warmsley, Macy and Weber (ICWSM 2017), 'Automated Hate Speech Detection and "
    "the Problem of Offensive Language' (MIT licence); expected at ../shared/data/"
    "davidson2017/labeled_data.csv or wherever TURNOUT_DATASET points"
)


@dataclass(frozen=True)
class Dataset:
    texts: list[str]
    labels: list[int]
    path: Path
    sha256: str


def binary_label(davidson_class: int) -> int:
    """Hate speech (0) and offensive language (1) are positive; neither (2) is negative."""
    if davidson_class not in (0, 1, 2):
        raise DatasetError(f"unknown Davidson class {davidson_class}")
    return 0 if davidson_class == 2 else 1


def load_dataset(path: Path, limit: int | None = None) -> Dataset:
    if not path.is_file():
        raise DatasetError(f"dataset not found at {path}. It is {DATA_SOURCE}.")
    texts: list[str] = []
    labels: list[int] = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"tweet", "class"} - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"{path} lacks the columns {sorted(missing)}")
        for row in reader:
            texts.append(row["tweet"])
            labels.append(binary_label(int(row["class"])))
            if limit is not None and len(texts) >= limit:
                break
    return Dataset(texts, labels, path, sha256_file(path))


def training_code_hash() -> str:
    digest = hashlib.sha256()
    for module_file in (recipes_module.__file__, __file__):
        digest.update(Path(str(module_file)).read_bytes())
    return digest.hexdigest()


def validation_metrics(y_true: list[int], scores: np.ndarray, threshold: float) -> dict[str, Any]:
    predicted = (scores >= threshold).astype(int)
    return {
        "accuracy": float(accuracy_score(y_true, predicted)),
        "precision": float(precision_score(y_true, predicted, zero_division=0)),
        "recall": float(recall_score(y_true, predicted, zero_division=0)),
        "f1": float(f1_score(y_true, predicted, zero_division=0)),
        "roc_auc": float(roc_auc_score(y_true, scores)),
        "confusion_matrix": confusion_matrix(y_true, predicted, labels=[0, 1]).tolist(),
        "validation_rows": len(y_true),
    }


def train(
    recipe: Recipe,
    version: str,
    dataset: Dataset,
    models_dir: Path,
    model: str = "profanity",
) -> dict[str, Any]:
    """Fit, evaluate on a stratified hold-out, write artifact and card; return the card."""
    x_train, x_val, y_train, y_val = train_test_split(
        dataset.texts,
        dataset.labels,
        test_size=VALIDATION_SHARE,
        random_state=SEED,
        stratify=dataset.labels,
    )
    estimator = recipe.build(recipe.params)
    started = time.perf_counter()
    estimator.fit(x_train, y_train)
    fit_seconds = time.perf_counter() - started
    scores = estimator.predict_proba(x_val)[:, 1]

    target = version_dir(models_dir, model, version)
    target.mkdir(parents=True, exist_ok=True)
    artifact = target / ARTIFACT
    _atomic_dump(estimator, artifact)
    card: dict[str, Any] = {
        "model": model,
        "version": version,
        "recipe": recipe.name,
        "description": recipe.description,
        "params": recipe.params,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "fit_seconds": round(fit_seconds, 3),
        "dataset": {
            "path": str(dataset.path),
            "rows": len(dataset.texts),
            "sha256": dataset.sha256,
            "train_rows": len(x_train),
            "split_seed": SEED,
            "validation_share": VALIDATION_SHARE,
        },
        "training_code_sha256": training_code_hash(),
        "libraries": {
            "python": platform.python_version(),
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "joblib": joblib.__version__,
        },
        "artifact": ARTIFACT,
        "artifact_sha256": sha256_file(artifact),
        "metrics": validation_metrics(y_val, scores, recipe.threshold),
        "decision_threshold": recipe.threshold,
        "label_names": list(recipe.label_names),
        "output_flag": recipe.output_flag,
    }
    _atomic_write(target / CARD, json.dumps(card, indent=2, sort_keys=True).encode())
    return card


def _atomic_dump(obj: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    os.close(fd)
    try:
        joblib.dump(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)

"""Train a recipe and write it to the registry with a card.

Two families: ``profanity`` (the Davidson et al. 2017 tweets, binary) and ``wine`` (the wine data
that ships inside scikit-learn: 13 numeric features, 3 classes). The card says what the model
takes (``input``) and answers (``classes``), so a worker serves either without knowing which.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import pickle
import platform
import re
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
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import train_test_split

from model_workers import recipes as recipes_module
from model_workers.calibration import calibration
from model_workers.recipes import RECIPES, WINE_RECIPES, Recipe, fit_recipe
from model_workers.references import score_reference, write_reference_inputs
from model_workers.registry import ARTIFACT, CARD, sha256_file, version_dir
from router.core.errors import DatasetError, RegistryError

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

    @property
    def inputs(self) -> list[str]:
        return self.texts

    def card(self) -> dict[str, Any]:
        return {"path": str(self.path), "rows": len(self.texts), "sha256": self.sha256}

    @property
    def input_spec(self) -> dict[str, Any]:
        return {"kind": "text"}


@dataclass(frozen=True)
class TabularDataset:
    """Rows of named numeric features (the wine data)."""

    rows: np.ndarray
    labels: list[int]
    names: list[str]
    source: str
    sha256: str

    @property
    def inputs(self) -> np.ndarray:
        return self.rows

    def card(self) -> dict[str, Any]:
        return {"source": self.source, "rows": len(self.labels), "sha256": self.sha256}

    @property
    def input_spec(self) -> dict[str, Any]:
        return {"kind": "features", "names": self.names, "types": "number"}


def feature_name(raw: str) -> str:
    """A dataset column as a JSON-friendly feature name (``od280/od315...`` -> ``od280_od315``)."""
    return re.sub(r"[^a-z0-9]+", "_", raw.lower()).strip("_")


def load_wine_dataset() -> TabularDataset:
    """The wine recognition data shipped inside scikit-learn (no download)."""
    from sklearn.datasets import load_wine

    data = load_wine()
    rows = np.asarray(data.data, dtype=np.float64)
    digest = hashlib.sha256(rows.tobytes() + np.asarray(data.target).tobytes()).hexdigest()
    return TabularDataset(
        rows,
        [int(t) for t in data.target],
        [feature_name(n) for n in data.feature_names],
        f"sklearn.datasets.load_wine (scikit-learn {sklearn.__version__})",
        digest,
    )


FAMILY_RECIPES: dict[str, dict[str, Recipe]] = {"profanity": RECIPES, "wine": WINE_RECIPES}
"""Recipes per model family (the registry's model name)."""


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


PORTABLE_PACKAGES = frozenset({"sklearn", "numpy", "scipy", "builtins", "copyreg", "_codecs"})
"""What an artifact may pickle: then it loads wherever the same scikit-learn is installed."""


class _Recorder(pickle.Unpickler):
    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.modules: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        self.modules.add(module)
        return super().find_class(module, name)


def pickled_packages(obj: Any) -> set[str]:
    """Top-level packages whose classes or functions a pickle of ``obj`` refers to."""
    recorder = _Recorder(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    recorder.load()
    return {module.split(".", 1)[0] for module in recorder.modules}


def check_portable(estimator: Any) -> list[str]:
    """Refuse an estimator that would pickle code from outside scikit-learn and its stack."""
    packages = pickled_packages(estimator)
    foreign = sorted(packages - PORTABLE_PACKAGES)
    if foreign:
        raise RegistryError(
            f"the artifact would pickle code from {', '.join(foreign)}: it could not load "
            "outside this environment; use scikit-learn objects only"
        )
    return sorted(packages)


def multiclass_metrics(y_true: list[int], proba: np.ndarray, classes: list[int]) -> dict[str, Any]:
    predicted = np.asarray(classes)[proba.argmax(axis=1)]
    return {
        "accuracy": float(accuracy_score(y_true, predicted)),
        "macro_f1": float(f1_score(y_true, predicted, average="macro", zero_division=0)),
        "log_loss": float(log_loss(y_true, proba, labels=classes)),
        "confusion_matrix": confusion_matrix(y_true, predicted, labels=classes).tolist(),
        "validation_rows": len(y_true),
    }


def split(inputs: Any, labels: list[int]) -> tuple[Any, Any, list[int], list[int]]:
    """The stratified hold-out every card's metrics are measured on (seeded: the same rows each
    time the same data is split)."""
    x_train, x_val, y_train, y_val = train_test_split(
        inputs, labels, test_size=VALIDATION_SHARE, random_state=SEED, stratify=labels
    )
    return x_train, x_val, list(y_train), list(y_val)


def fit_timed(recipe: Recipe, inputs: Any, labels: list[int]) -> tuple[Any, float]:
    started = time.perf_counter()
    estimator = fit_recipe(recipe, inputs, labels)
    return estimator, time.perf_counter() - started


def scores_of(estimator: Any, inputs: Any) -> np.ndarray:
    """What a worker answers as ``score``: P(class 1) for two classes, else the top class's."""
    proba = np.asarray(estimator.predict_proba(inputs), dtype=np.float64)
    scores: np.ndarray = proba[:, 1] if proba.shape[1] == 2 else proba.max(axis=1)
    return scores


def evaluate(recipe: Recipe, estimator: Any, x_val: Any, y_val: list[int]) -> dict[str, Any]:
    """The card's validation blocks: metrics, calibration (two classes) and the drift reference
    (the validation scores' distribution)."""
    proba = estimator.predict_proba(x_val)
    classes = [int(c) for c in estimator.classes_]
    if len(classes) == 2:
        scores = proba[:, 1]
        return {
            "metrics": validation_metrics(y_val, scores, recipe.threshold),
            "calibration": calibration(y_val, scores),
            "reference": score_reference(scores, recipe.threshold, "validation"),
        }
    return {
        "metrics": multiclass_metrics(y_val, proba, classes),
        "reference": score_reference(proba.max(axis=1), None, "validation"),
    }


def describe(
    recipe: Recipe, model: str, version: str, estimator: Any, fit_seconds: float
) -> dict[str, Any]:
    """What every card says of how its model was made (data and evaluation come on top)."""
    return {
        "model": model,
        "version": version,
        "recipe": recipe.name,
        "description": recipe.description,
        "params": recipe.params,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "fit_seconds": round(fit_seconds, 3),
        "training_code_sha256": training_code_hash(),
        "libraries": {
            "python": platform.python_version(),
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "joblib": joblib.__version__,
        },
        "artifact": ARTIFACT,
        "decision_threshold": recipe.threshold,
        "label_names": list(recipe.label_names),
        "output_flag": recipe.output_flag,
        "classes": [int(c) for c in estimator.classes_],
    }


def write_version(
    models_dir: Path,
    model: str,
    version: str,
    estimator: Any,
    card: dict[str, Any],
    reference_inputs: Any,
    exclusive: bool = False,
) -> dict[str, Any]:
    """Artifact, reference inputs and card into the registry; the card is written last, so a
    version is there once its card is. ``exclusive``: refuse a version that exists already."""
    packages = check_portable(estimator)
    target = version_dir(models_dir, model, version)
    if exclusive and target.exists():
        raise RegistryError(f"{model} {version} exists already in {models_dir}; pick a new name")
    target.mkdir(parents=True, exist_ok=not exclusive)
    artifact = target / ARTIFACT
    _atomic_dump(estimator, artifact)
    card = {**card, "artifact_sha256": sha256_file(artifact), "pickled_packages": packages}
    if reference_inputs is not None and "reference" in card:
        inputs = write_reference_inputs(target, reference_inputs, SEED)
        card["reference"] = {**card["reference"], "inputs": inputs}
    _atomic_write(target / CARD, json.dumps(card, indent=2, sort_keys=True).encode())
    return card


def train(
    recipe: Recipe,
    version: str,
    dataset: Dataset | TabularDataset,
    models_dir: Path,
    model: str = "profanity",
) -> dict[str, Any]:
    """Fit, evaluate on a stratified hold-out, write artifact and card; return the card."""
    x_train, x_val, y_train, y_val = split(dataset.inputs, dataset.labels)
    estimator, fit_seconds = fit_timed(recipe, x_train, y_train)
    card = {
        **describe(recipe, model, version, estimator, fit_seconds),
        **evaluate(recipe, estimator, x_val, y_val),
        "dataset": {
            **dataset.card(),
            "train_rows": len(x_train),
            "split_seed": SEED,
            "validation_share": VALIDATION_SHARE,
        },
        "input": dataset.input_spec,
    }
    return write_version(
        models_dir, model, version, estimator, card, reference_rows(dataset, x_val)
    )


def reference_rows(dataset: Dataset | TabularDataset, x_val: Any) -> list[Any]:
    """The validation inputs as a card's reference sample keeps them."""
    if isinstance(dataset, TabularDataset):
        return [dict(zip(dataset.names, map(float, row), strict=True)) for row in x_val]
    return list(x_val)


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

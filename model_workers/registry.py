"""The model registry: ``<root>/<model>/<version>/`` holds ``model.joblib`` and ``card.json``."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import joblib
import numpy as np

from router.core.errors import RegistryError
from router.core.inputs import FeatureType

ARTIFACT = "model.joblib"
CARD = "card.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def version_dir(root: Path, model: str, version: str) -> Path:
    return root / model / version


@dataclass(frozen=True)
class LoadedModel:
    """A verified artifact and its card, ready to predict."""

    card: dict[str, Any]
    estimator: Any

    @property
    def name(self) -> str:
        return str(self.card["model"])

    @property
    def version(self) -> str:
        return str(self.card["version"])

    @property
    def threshold(self) -> float:
        return float(self.card["decision_threshold"])

    @property
    def output_flag(self) -> str | None:
        flag = self.card.get("output_flag")
        return str(flag) if flag else None

    @property
    def input_spec(self) -> dict[str, Any]:
        """What the model takes: ``{"kind": "text"}`` or named ``features`` (cards before the
        wine family have no ``input``: they are text models)."""
        spec = self.card.get("input") or {"kind": "text"}
        return dict(spec)

    @property
    def feature_names(self) -> list[str]:
        return [str(n) for n in self.input_spec.get("names", [])]

    def feature_types(self) -> dict[str, FeatureType]:
        types = self.input_spec.get("types", "number")
        chosen = {
            n: types if isinstance(types, str) else types.get(n, "number")
            for n in self.feature_names
        }
        return {n: cast(FeatureType, t) for n, t in chosen.items()}

    @property
    def classes(self) -> list[int]:
        return [int(c) for c in self.card.get("classes", [0, 1])]

    def predict_scores(self, texts: list[str]) -> list[float]:
        proba = self.estimator.predict_proba(texts)
        return [float(p) for p in proba[:, 1]]

    def rows(self, features: list[dict[str, float]]) -> np.ndarray:
        """Named features as the estimator's rows, in the card's order."""
        names = self.feature_names
        return np.asarray([[row[n] for n in names] for row in features], dtype=np.float64)

    def outputs(self, inputs: list[str] | np.ndarray) -> list[dict[str, Any]]:
        """The worker contract: ``label`` and ``score`` plus the family's own fields. Binary:
        score = P(class 1), label by the threshold; more classes: the top class and its
        probability, and every class's probability."""
        proba = self.estimator.predict_proba(inputs)
        classes = self.classes
        names = list(self.card.get("label_names", []))
        results = []
        for row in proba:
            out: dict[str, Any]
            if len(classes) == 2:
                score = float(row[1])
                label = int(score >= self.threshold)
                out = {"label": label, "score": score}
                if self.output_flag:
                    out[self.output_flag] = bool(label)
            else:
                top = int(row.argmax())
                out = {"label": classes[top], "score": float(row[top])}
                out["probabilities"] = [float(p) for p in row]
                if len(names) == len(classes):
                    out["class_name"] = names[top]
            out["model"] = self.name
            out["version"] = self.version
            results.append(out)
        return results

    def warm_input(self) -> list[str] | np.ndarray:
        if self.input_spec.get("kind") == "features":
            return np.zeros((1, len(self.feature_names)))
        return ["warm-up"]


def read_card(root: Path, model: str, version: str) -> dict[str, Any]:
    path = version_dir(root, model, version) / CARD
    if not path.is_file():
        raise RegistryError(f"no model card at {path}; train it with `turnout train`")
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RegistryError(f"model card {path} is unreadable: {exc}") from None
    if not isinstance(card, dict):
        raise RegistryError(f"model card {path} is not a JSON object")
    return card


def verify(root: Path, model: str, version: str) -> tuple[dict[str, Any], Path]:
    """Check that the artifact's sha256 equals its card's; return the card and the path."""
    card = read_card(root, model, version)
    artifact = version_dir(root, model, version) / ARTIFACT
    if not artifact.is_file():
        raise RegistryError(f"no artifact at {artifact}")
    expected = card.get("artifact_sha256")
    actual = sha256_file(artifact)
    if actual != expected:
        raise RegistryError(
            f"artifact {artifact} fails its integrity check: sha256 {actual} "
            f"does not match the card's {expected}; refusing to serve it"
        )
    return card, artifact


def load(root: Path, model: str, version: str) -> LoadedModel:
    """Load a version, refusing any artifact whose sha256 differs from its card's."""
    card, artifact = verify(root, model, version)
    # The hash check above is what makes unpickling this file acceptable.
    return LoadedModel(card=card, estimator=joblib.load(artifact))


def list_cards(root: Path) -> list[dict[str, Any]]:
    cards = []
    if root.is_dir():
        for card_path in sorted(root.glob(f"*/*/{CARD}")):
            version = card_path.parent.name
            model = card_path.parent.parent.name
            try:
                cards.append(read_card(root, model, version))
            except RegistryError:
                continue
    return cards

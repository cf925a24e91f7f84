"""Recipes, cards and integrity checks, on a sample of the real data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from model_workers import registry
from model_workers.recipes import RECIPES, WINE_RECIPES, tweet_tokens
from model_workers.train import (
    PORTABLE_PACKAGES,
    binary_label,
    check_portable,
    load_dataset,
    load_wine_dataset,
    pickled_packages,
    train,
)
from router.core.errors import DatasetError, RegistryError
from router.core.settings import Settings


def test_label_mapping() -> None:
    assert [binary_label(c) for c in (0, 1, 2)] == [1, 1, 0]
    with pytest.raises(DatasetError):
        binary_label(3)


def test_missing_dataset_says_where_data_comes_from(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="Davidson") as info:
        load_dataset(tmp_path / "nope.csv")
    assert "TURNOUT_DATASET" in info.value.detail


def test_dataset_loads_with_both_classes() -> None:
    ds = load_dataset(Settings().dataset, limit=500)
    assert len(ds.texts) == len(ds.labels) == 500
    assert set(ds.labels) == {0, 1}
    assert len(ds.sha256) == 64


def test_tweet_words_skip_noise() -> None:
    assert tweet_tokens("RT @bob: Look &amp; see http://t.co/x  NOW") == ["look", "see", "now"]
    assert tweet_tokens("so #bored &#8220;ok&#8221;") == ["so", "bored", "ok"]


def test_artifacts_pickle_nothing_of_ours(models_dir: Path) -> None:
    """Every registry artifact loads where scikit-learn does: no Turnout code is pickled."""
    import joblib

    for artifact in sorted(models_dir.glob("*/*/model.joblib")):
        packages = pickled_packages(joblib.load(artifact))
        assert packages <= PORTABLE_PACKAGES, (artifact, packages)
        assert "sklearn" in packages


def test_an_estimator_holding_our_function_is_refused() -> None:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    estimator = Pipeline([("clean", FunctionTransformer(tweet_tokens))])
    with pytest.raises(RegistryError, match="model_workers"):
        check_portable(estimator)


def test_wine_is_a_three_class_tabular_family(tmp_path: Path) -> None:
    wine = load_wine_dataset()
    assert wine.rows.shape == (178, 13) and set(wine.labels) == {0, 1, 2}
    assert "od280_od315_of_diluted_wines" in wine.names
    card = train(WINE_RECIPES["v1"], "v1", wine, tmp_path, "wine")
    assert card["input"] == {"kind": "features", "names": wine.names, "types": "number"}
    assert card["classes"] == [0, 1, 2]
    assert len(card["metrics"]["confusion_matrix"]) == 3
    assert card["metrics"]["accuracy"] > 0.9
    loaded = registry.load(tmp_path, "wine", "v1")
    row = dict(zip(wine.names, wine.rows[0].tolist(), strict=True))
    (out,) = loaded.outputs(loaded.rows([row]))
    assert out["label"] == 0 and out["class_name"] == "class_0"
    assert len(out["probabilities"]) == 3 and out["score"] == max(out["probabilities"])


def test_recipes_differ_for_real() -> None:
    kinds = {type(RECIPES[n].build(RECIPES[n].params).steps[-1][1]).__name__ for n in RECIPES}
    assert len(kinds) >= 2
    assert "char" in RECIPES["v2"].params.__repr__() or "char_min" in RECIPES["v2"].params


def test_card_has_everything(models_dir: Path) -> None:
    card = registry.read_card(models_dir, "profanity", "v2")
    for key in (
        "model",
        "version",
        "recipe",
        "params",
        "trained_at",
        "dataset",
        "training_code_sha256",
        "libraries",
        "artifact_sha256",
        "metrics",
        "decision_threshold",
        "label_names",
    ):
        assert key in card, key
    assert {"path", "rows", "sha256"} <= set(card["dataset"])
    metrics = card["metrics"]
    assert {"accuracy", "precision", "recall", "f1", "roc_auc", "confusion_matrix"} <= set(metrics)
    assert sum(map(sum, metrics["confusion_matrix"])) == metrics["validation_rows"]
    assert card["artifact_sha256"] == registry.sha256_file(models_dir / "profanity/v2/model.joblib")


def test_all_versions_predict_probabilities(models_dir: Path) -> None:
    for version in ("v1", "v2", "v3"):
        loaded = registry.load(models_dir, "profanity", version)
        scores = loaded.predict_scores(["hello", "you stupid bitch"])
        assert all(0.0 <= s <= 1.0 for s in scores)


@pytest.mark.parametrize("damage", ["tamper", "truncate", "delete"])
def test_damaged_artifact_is_refused(models_dir: Path, tmp_path: Path, damage: str) -> None:
    root = tmp_path / "models"
    shutil.copytree(models_dir, root)
    artifact = root / "profanity" / "v1" / "model.joblib"
    data = artifact.read_bytes()
    if damage == "tamper":
        artifact.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    elif damage == "truncate":
        artifact.write_bytes(data[: len(data) // 2])
    else:
        artifact.unlink()
    with pytest.raises(RegistryError, match=r"integrity check|no artifact"):
        registry.load(root, "profanity", "v1")


def test_unreadable_card_is_refused(models_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "models"
    shutil.copytree(models_dir, root)
    (root / "profanity" / "v1" / "card.json").write_text("{not json")
    with pytest.raises(RegistryError, match="unreadable"):
        registry.load(root, "profanity", "v1")
    (root / "profanity" / "v1" / "card.json").write_text(json.dumps([1]))
    with pytest.raises(RegistryError, match="not a JSON object"):
        registry.load(root, "profanity", "v1")


def test_list_cards(models_dir: Path) -> None:
    cards = registry.list_cards(models_dir)
    assert [(c["model"], c["version"]) for c in cards] == [
        ("profanity", "v1"),
        ("profanity", "v2"),
        ("profanity", "v3"),
        ("wine", "v1"),
        ("wine", "v2"),
    ]


def test_v2_beats_v1_on_the_full_data(tmp_path: Path) -> None:
    dataset = load_dataset(Settings().dataset)
    v1 = train(RECIPES["v1"], "v1", dataset, tmp_path)["metrics"]
    v2 = train(RECIPES["v2"], "v2", dataset, tmp_path)["metrics"]
    assert v2["f1"] > v1["f1"]
    assert v2["roc_auc"] > v1["roc_auc"]

"""What a card keeps for drift and calibration, and the v4 recipe's folded blend."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.naive_bayes import MultinomialNB

from model_workers import registry
from model_workers.recipes import RECIPES, fit_recipe
from model_workers.references import (
    REFERENCE_INPUTS,
    input_rows,
    read_reference_inputs,
    write_reference_inputs,
)
from model_workers.train import PORTABLE_PACKAGES, load_dataset, pickled_packages, train
from router.core.errors import RegistryError
from router.core.settings import Settings


@pytest.fixture(scope="module")
def sample() -> tuple[list[str], list[int]]:
    ds = load_dataset(Settings().dataset, limit=2000)
    return ds.texts, ds.labels


def test_v4_is_the_logit_average_of_its_two_members(sample: tuple[list[str], list[int]]) -> None:
    texts, labels = sample
    recipe = RECIPES["v4"]
    model = fit_recipe(recipe, texts, labels)
    assert pickled_packages(model) <= PORTABLE_PACKAGES
    v2 = fit_recipe(RECIPES["v2"], texts, labels)
    p = recipe.params
    counts = CountVectorizer(
        lowercase=True,
        binary=True,
        ngram_range=(1, p["nb_ngrams"]),
        token_pattern=model.named_steps["features"].transformer_list[2][1].token_pattern,
    )
    x = counts.fit_transform(texts)
    nb = MultinomialNB(alpha=p["nb_alpha"]).fit(x, labels)
    r = nb.feature_log_prob_[1] - nb.feature_log_prob_[0]
    from sklearn.linear_model import LogisticRegression

    second = LogisticRegression(C=p["nb_C"], max_iter=3000, solver="liblinear").fit(
        x.multiply(r).tocsr(), labels
    )
    probe = texts[:50]
    expected = expit(
        (1 - p["blend"]) * v2.decision_function(probe)
        + p["blend"] * second.decision_function(counts.transform(probe).multiply(r).tocsr())
    )
    assert model.predict_proba(probe)[:, 1] == pytest.approx(expected, rel=1e-9)


def test_a_card_keeps_calibration_and_references(
    sample: tuple[list[str], list[int]], tmp_path: Path
) -> None:
    ds = load_dataset(Settings().dataset, limit=2000)
    card = train(RECIPES["v1"], "v1", ds, tmp_path)
    cal = card["calibration"]
    assert 0 <= cal["ece"] < 0.2 and len(cal["reliability"]) == cal["bins"] == 10
    assert sum(b["rows"] for b in cal["reliability"]) == card["metrics"]["validation_rows"]
    ref = card["reference"]
    assert ref["rows"] == card["metrics"]["validation_rows"] == 400
    assert len(ref["quantiles"]) == 1001 and ref["quantiles"] == sorted(ref["quantiles"])
    assert 0 < ref["positive_rate"] < 1
    folder = registry.version_dir(tmp_path, "profanity", "v1")
    data = (folder / REFERENCE_INPUTS).read_bytes()
    assert ref["inputs"]["sha256"] == hashlib.sha256(data).hexdigest()
    rows = read_reference_inputs(folder)
    assert rows is not None and len(rows) == ref["inputs"]["rows"] == 400
    assert all(set(r) == {"text"} for r in rows)
    assert registry.load(tmp_path, "profanity", "v1").version == "v1"


def test_reference_inputs_are_sampled_and_kept_by_kind(tmp_path: Path) -> None:
    entry = write_reference_inputs(tmp_path, [f"tweet {i}" for i in range(50)], seed=1, limit=10)
    assert entry["rows"] == 10
    rows = read_reference_inputs(tmp_path)
    assert rows is not None and len(rows) == 10
    assert input_rows([{"alcohol": 13.0, "colour": "red"}]) == [
        {"features": {"alcohol": 13.0, "colour": "red"}}
    ]
    with pytest.raises(TypeError):
        input_rows([3.5])
    assert read_reference_inputs(tmp_path / "none") is None


def test_exclusive_registration_never_overwrites(
    sample: tuple[list[str], list[int]], tmp_path: Path
) -> None:
    from model_workers.train import write_version

    texts, labels = sample
    model = fit_recipe(RECIPES["v3"], texts, labels)
    card = {"model": "profanity", "version": "v9"}
    write_version(tmp_path, "profanity", "v9", model, card, None, exclusive=True)
    before = (registry.version_dir(tmp_path, "profanity", "v9") / "model.joblib").read_bytes()
    with pytest.raises(RegistryError, match="exists already"):
        write_version(tmp_path, "profanity", "v9", model, card, None, exclusive=True)
    after = (registry.version_dir(tmp_path, "profanity", "v9") / "model.joblib").read_bytes()
    assert before == after
    assert np.isfinite(model.predict_proba(texts[:3])).all()

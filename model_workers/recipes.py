"""Training recipes: the profanity family (text, binary) and the wine family (tabular, 3 classes).

Artifacts hold scikit-learn objects only, never a function of ours: a registry artifact loads in
any environment with the same scikit-learn version (BentoML, MLServer, MLflow), with no Turnout
code on its path. Text clean-up is therefore a token pattern, not a preprocessor function.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import ComplementNB, MultinomialNB
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import StandardScaler

# Words of a lower-cased tweet, skipping what is noise for profanity: retweet markers, @mentions,
# HTML entities (&amp;) and the pieces of URLs (http://t.co/x). A pattern, not a function, so the
# artifact pickles nothing of ours.
TWEET_WORDS = r"(?u)(?<![@&\w/.:])(?<!&#)\b(?!rt\b|https?\b)\w+\b(?![/.:]\w)"


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    params: dict[str, Any]
    build: Callable[[dict[str, Any]], Pipeline]
    threshold: float = 0.5
    label_names: tuple[str, ...] = ("neither", "offensive_or_hate")
    output_flag: str | None = "is_profane"
    tags: list[str] = field(default_factory=list)
    fit: Callable[[dict[str, Any], Any, Any], Pipeline] | None = None
    """Fits in stages and assembles the fitted pipeline itself (``build`` then gives its shape);
    unset: ``build(params).fit(x, y)``."""


def fit_recipe(recipe: Recipe, inputs: Any, labels: Any) -> Pipeline:
    """The fitted estimator of a recipe (scikit-learn objects only, whichever way it is fit)."""
    if recipe.fit is not None:
        return recipe.fit(recipe.params, inputs, labels)
    return recipe.build(recipe.params).fit(inputs, labels)


def tweet_tokens(text: str) -> list[str]:
    """What the word vectorizers see of a text (for tests and for humans)."""
    return re.findall(TWEET_WORDS, text.lower())


def _word_tfidf(ngrams: tuple[int, int], min_df: int) -> TfidfVectorizer:
    return TfidfVectorizer(
        lowercase=True,
        ngram_range=ngrams,
        min_df=min_df,
        sublinear_tf=True,
        token_pattern=TWEET_WORDS,
    )


def _platt(classifier: Any) -> CalibratedClassifierCV:
    """Platt scaling fitted on 5-fold out-of-fold scores, then one classifier on all rows
    (``ensemble=False``: predictions cost what the bare classifier's do)."""
    return CalibratedClassifierCV(classifier, method="sigmoid", cv=5, ensemble=False)


def _build_v1(p: dict[str, Any]) -> Pipeline:
    return Pipeline(
        [
            ("tfidf", _word_tfidf((1, 2), p["min_df"])),
            ("clf", _platt(LogisticRegression(C=p["C"], max_iter=2000, solver="liblinear"))),
        ]
    )


def _char_tfidf(p: dict[str, Any]) -> TfidfVectorizer:
    return TfidfVectorizer(
        lowercase=True,
        analyzer="char_wb",
        ngram_range=(p["char_min"], p["char_max"]),
        min_df=p["min_df"],
        sublinear_tf=True,
    )


def _build_v2(p: dict[str, Any]) -> Pipeline:
    features = FeatureUnion([("word", _word_tfidf((1, 2), p["min_df"])), ("char", _char_tfidf(p))])
    return Pipeline(
        [
            ("features", features),
            ("clf", LogisticRegression(C=p["C"], max_iter=2000, solver="liblinear")),
        ]
    )


def _binary_words(p: dict[str, Any]) -> CountVectorizer:
    return CountVectorizer(
        lowercase=True, binary=True, ngram_range=(1, p["nb_ngrams"]), token_pattern=TWEET_WORDS
    )


def _build_v4(p: dict[str, Any]) -> Pipeline:
    """The shape of v4's fitted pipeline: three feature blocks, one linear model over them."""
    features = FeatureUnion(
        [
            ("word", _word_tfidf((1, 2), p["min_df"])),
            ("char", _char_tfidf(p)),
            ("nb", _binary_words(p)),
        ]
    )
    return Pipeline([("features", features), ("clf", LogisticRegression())])


def _fit_v4(p: dict[str, Any], x: Any, y: Any) -> Pipeline:
    """Two logistic regressions averaged in logit space, folded into one linear model.

    The first is v2 (word and character TF-IDF). The second is NBSVM-style (Wang and Manning
    2012): binary word n-grams scaled by their naive Bayes log-count ratios r. Both are linear,
    so their logit average is one linear model over [TF-IDF features, binary words] with
    weights [(1 - b) w1, b (w2 * r)]: the artifact is a plain scikit-learn pipeline.
    """
    shape = _build_v4(p)
    union = shape.named_steps["features"]
    word, char, binary = (t for _, t in union.transformer_list)
    tfidf = FeatureUnion([("word", word), ("char", char)])
    first = LogisticRegression(C=p["C"], max_iter=2000, solver="liblinear")
    first.fit(tfidf.fit_transform(x), y)
    counts = binary.fit_transform(x)
    nb = MultinomialNB(alpha=p["nb_alpha"]).fit(counts, y)
    ratios = nb.feature_log_prob_[1] - nb.feature_log_prob_[0]
    second = LogisticRegression(C=p["nb_C"], max_iter=3000, solver="liblinear")
    second.fit(counts.multiply(ratios).tocsr(), y)
    b = p["blend"]
    blended = shape.named_steps["clf"]
    blended.classes_ = first.classes_
    blended.coef_ = np.hstack([(1 - b) * first.coef_, b * second.coef_ * ratios])
    blended.intercept_ = (1 - b) * first.intercept_ + b * second.intercept_
    blended.n_features_in_ = blended.coef_.shape[1]
    return shape


def _build_v3(p: dict[str, Any]) -> Pipeline:
    return Pipeline(
        [
            ("tfidf", _word_tfidf((1, 1), p["min_df"])),
            ("clf", _platt(ComplementNB(alpha=p["alpha"]))),
        ]
    )


RECIPES: dict[str, Recipe] = {
    "v1": Recipe(
        "v1",
        "TF-IDF word 1-2 grams + logistic regression, Platt-calibrated (the classic baseline)",
        {"min_df": 2, "C": 4.0},
        _build_v1,
    ),
    "v2": Recipe(
        "v2",
        "TF-IDF word 1-2 grams + char_wb 2-5 grams + logistic regression (more accurate, slower)",
        {"min_df": 2, "C": 8.0, "char_min": 2, "char_max": 5},
        _build_v2,
    ),
    "v3": Recipe(
        "v3",
        "TF-IDF word unigrams + complement naive Bayes, Platt-calibrated (cheap, differently "
        "biased)",
        {"min_df": 2, "alpha": 0.3},
        _build_v3,
    ),
    "v4": Recipe(
        "v4",
        "v2 averaged in logit space with an NBSVM-style logistic regression on binary word 1-2 "
        "grams (most accurate, calibrated; one linear model)",
        {
            "min_df": 2,
            "C": 8.0,
            "char_min": 2,
            "char_max": 5,
            "nb_ngrams": 2,
            "nb_alpha": 1.0,
            "nb_C": 1.0,
            "blend": 0.5,
        },
        _build_v4,
        fit=_fit_v4,
    ),
}


def _wine_logistic(p: dict[str, Any]) -> Pipeline:
    return Pipeline(
        [("scale", StandardScaler()), ("clf", LogisticRegression(C=p["C"], max_iter=5000))]
    )


def _wine_forest(p: dict[str, Any]) -> Pipeline:
    forest = RandomForestClassifier(
        n_estimators=p["n_estimators"], max_depth=p["max_depth"], random_state=p["seed"]
    )
    return Pipeline([("clf", forest)])


WINE_CLASSES = ("class_0", "class_1", "class_2")
WINE_RECIPES: dict[str, Recipe] = {
    "v1": Recipe(
        "v1",
        "standardised features + multinomial logistic regression",
        {"C": 0.5},
        _wine_logistic,
        label_names=WINE_CLASSES,
        output_flag=None,
    ),
    "v2": Recipe(
        "v2",
        "random forest of 100 shallow trees (differently biased)",
        {"n_estimators": 100, "max_depth": 3, "seed": 7},
        _wine_forest,
        label_names=WINE_CLASSES,
        output_flag=None,
    ),
}

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

from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import ComplementNB
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


def _build_v1(p: dict[str, Any]) -> Pipeline:
    return Pipeline(
        [
            ("tfidf", _word_tfidf((1, 2), p["min_df"])),
            ("clf", LogisticRegression(C=p["C"], max_iter=2000, solver="liblinear")),
        ]
    )


def _build_v2(p: dict[str, Any]) -> Pipeline:
    features = FeatureUnion(
        [
            ("word", _word_tfidf((1, 2), p["min_df"])),
            (
                "char",
                TfidfVectorizer(
                    lowercase=True,
                    analyzer="char_wb",
                    ngram_range=(p["char_min"], p["char_max"]),
                    min_df=p["min_df"],
                    sublinear_tf=True,
                ),
            ),
        ]
    )
    return Pipeline(
        [
            ("features", features),
            ("clf", LogisticRegression(C=p["C"], max_iter=2000, solver="liblinear")),
        ]
    )


def _build_v3(p: dict[str, Any]) -> Pipeline:
    return Pipeline(
        [
            ("tfidf", _word_tfidf((1, 1), p["min_df"])),
            ("clf", ComplementNB(alpha=p["alpha"])),
        ]
    )


RECIPES: dict[str, Recipe] = {
    "v1": Recipe(
        "v1",
        "TF-IDF word 1-2 grams + logistic regression (the classic baseline)",
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
        "TF-IDF word unigrams + complement naive Bayes (cheap, differently biased)",
        {"min_df": 2, "alpha": 0.3},
        _build_v3,
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

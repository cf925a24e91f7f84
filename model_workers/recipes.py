"""Training recipes of the profanity family: three pipelines that differ for real."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import ComplementNB
from sklearn.pipeline import FeatureUnion, Pipeline

_URL = re.compile(r"https?://\S+")
_MENTION = re.compile(r"@\w+")
_ENTITY = re.compile(r"&(amp|lt|gt|quot|#\d+);")
_RT = re.compile(r"^\s*rt\b|\brt\b")
_SPACE = re.compile(r"\s+")


def normalize_tweet(text: str) -> str:
    """Lower-case and strip URLs, mentions, HTML entities and retweet markers."""
    text = text.lower()
    text = _URL.sub(" ", text)
    text = _MENTION.sub(" ", text)
    text = _ENTITY.sub(" ", text)
    text = _RT.sub(" ", text)
    return _SPACE.sub(" ", text).strip()


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    params: dict[str, Any]
    build: Callable[[dict[str, Any]], Pipeline]
    threshold: float = 0.5
    label_names: tuple[str, str] = ("neither", "offensive_or_hate")
    output_flag: str = "is_profane"
    tags: list[str] = field(default_factory=list)


def _word_tfidf(ngrams: tuple[int, int], min_df: int) -> TfidfVectorizer:
    return TfidfVectorizer(
        preprocessor=normalize_tweet,
        ngram_range=ngrams,
        min_df=min_df,
        sublinear_tf=True,
        token_pattern=r"(?u)\b\w+\b",  # noqa: S106
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
                    preprocessor=normalize_tweet,
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

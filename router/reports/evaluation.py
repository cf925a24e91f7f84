"""Two models scored on the same labelled rows: the paired comparison a retrained version must win.

``compare`` gives each model's ROC AUC and accuracy, a paired bootstrap interval of the AUC
difference (the same resampled rows score both models, stratified by class so that every
resample holds both classes) and McNemar's test on the rows exactly one model gets right.
``decide`` applies the rule a retrained version must pass before it is registered. Pure: numbers
in, plain data out, randomness from an injected generator.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from router.reports.stats import McNemarResult, mcnemar

BOOTSTRAP_ROUNDS = 2000


@dataclass(frozen=True)
class PairedEvaluation:
    """Candidate against production on one labelled set."""

    rows: int
    positives: int
    auc_candidate: float
    auc_production: float
    auc_difference: float
    """Candidate minus production."""
    interval: tuple[float, float]
    """Paired bootstrap percentile interval of the AUC difference."""
    confidence: float
    bootstrap_rounds: int
    accuracy_candidate: float
    accuracy_production: float
    mcnemar: McNemarResult
    """``b``: rows only the candidate gets right; ``c``: rows only production gets right."""

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["interval"] = list(self.interval)
        data["mcnemar"] = dict(self.mcnemar)
        return data


class _Ranker:
    """One model's scores as tie groups in score order, for weighted AUCs of many resamples."""

    def __init__(self, scores: NDArray[np.float64], positive: NDArray[np.bool_]) -> None:
        _, groups = np.unique(scores, return_inverse=True)
        self.size = int(groups.max()) + 1
        self.pos_groups = groups[positive]
        self.neg_groups = groups[~positive]

    def auc(self, pos_weights: NDArray[np.float64], neg_weights: NDArray[np.float64]) -> float:
        """Weighted Mann-Whitney AUC: P(score of a positive > a negative's), ties counting half."""
        neg_at = np.bincount(self.neg_groups, weights=neg_weights, minlength=self.size)
        below = np.cumsum(neg_at) - neg_at
        wins = pos_weights @ (below[self.pos_groups] + 0.5 * neg_at[self.pos_groups])
        return float(wins / (pos_weights.sum() * neg_weights.sum()))


def _positive(labels: ArrayLike, *score_sets: ArrayLike) -> NDArray[np.bool_]:
    """The labels as a mask of positives, once labels and scores are checked."""
    y = np.asarray(labels)
    if y.ndim != 1 or not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be a flat sequence of 0 and 1")
    positive = y.astype(bool)
    if positive.all() or not positive.any():
        raise ValueError("an AUC needs both classes among the labels")
    for scores in score_sets:
        s = np.asarray(scores, dtype=np.float64)
        if s.shape != y.shape or not np.all(np.isfinite(s)):
            raise ValueError("scores must be finite, one per label")
    return positive


def roc_auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """ROC AUC with ties counted half (as scikit-learn's ``roc_auc_score``)."""
    positive = _positive(labels, scores)
    ranker = _Ranker(np.asarray(scores, dtype=np.float64), positive)
    return ranker.auc(np.ones(int(positive.sum())), np.ones(int((~positive).sum())))


def compare(
    labels: ArrayLike,
    candidate: ArrayLike,
    production: ArrayLike,
    threshold: float,
    rng: np.random.Generator,
    rounds: int = BOOTSTRAP_ROUNDS,
    confidence: float = 0.95,
) -> PairedEvaluation:
    """Score both models on the same rows (``candidate`` and ``production`` are P(label 1))."""
    positive = _positive(labels, candidate, production)
    if rounds < 100 or not 0.0 < confidence < 1.0:
        raise ValueError("need at least 100 bootstrap rounds and a confidence in (0, 1)")
    new = np.asarray(candidate, dtype=np.float64)
    old = np.asarray(production, dtype=np.float64)
    rank_new, rank_old = _Ranker(new, positive), _Ranker(old, positive)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    ones_pos, ones_neg = np.ones(n_pos), np.ones(n_neg)
    auc_new, auc_old = rank_new.auc(ones_pos, ones_neg), rank_old.auc(ones_pos, ones_neg)
    differences = np.empty(rounds)
    for i in range(rounds):
        pos_w = np.bincount(rng.integers(0, n_pos, n_pos), minlength=n_pos).astype(np.float64)
        neg_w = np.bincount(rng.integers(0, n_neg, n_neg), minlength=n_neg).astype(np.float64)
        differences[i] = rank_new.auc(pos_w, neg_w) - rank_old.auc(pos_w, neg_w)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(differences, [tail, 1.0 - tail])
    right_new = (new >= threshold) == positive
    right_old = (old >= threshold) == positive
    return PairedEvaluation(
        rows=int(positive.size),
        positives=n_pos,
        auc_candidate=auc_new,
        auc_production=auc_old,
        auc_difference=auc_new - auc_old,
        interval=(float(low), float(high)),
        confidence=confidence,
        bootstrap_rounds=rounds,
        accuracy_candidate=float(right_new.mean()),
        accuracy_production=float(right_old.mean()),
        mcnemar=mcnemar(int((right_new & ~right_old).sum()), int((right_old & ~right_new).sum())),
    )


@dataclass(frozen=True)
class Decision:
    accepted: bool
    reasons: list[str]


def decide(
    recent: PairedEvaluation, holdout: PairedEvaluation, margin: float, alpha: float = 0.05
) -> Decision:
    """A retrained version is registered only if it is better on the recent window (the whole
    AUC interval above 0) without being worse on the frozen holdout (the interval's lower end
    above ``-margin``, and McNemar not showing more errors at ``alpha``)."""
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin must be in [0, 1), got {margin!r}")
    reasons = []
    low, high = recent.interval
    if low <= 0.0:
        reasons.append(
            f"not better on the recent window: AUC {recent.auc_candidate:.4f} vs "
            f"{recent.auc_production:.4f}, difference {recent.auc_difference:+.4f} "
            f"[{low:+.4f}, {high:+.4f}] does not exclude 0 (n = {recent.rows})"
        )
    low, high = holdout.interval
    if low <= -margin:
        reasons.append(
            f"possibly worse on the holdout: AUC {holdout.auc_candidate:.4f} vs "
            f"{holdout.auc_production:.4f}, difference {holdout.auc_difference:+.4f} "
            f"[{low:+.4f}, {high:+.4f}] reaches below -{margin:g} (n = {holdout.rows})"
        )
    test = holdout.mcnemar
    if test["c"] > test["b"] and test["p_value"] < alpha:
        reasons.append(
            f"more errors on the holdout: {test['c']} rows only production gets right against "
            f"{test['b']} only the candidate does (McNemar p = {test['p_value']:.3g})"
        )
    return Decision(not reasons, reasons)

"""Pure statistics of the drift checks: distances between two score distributions, their tests,
and the per-check false-alarm level of a check that runs on a schedule.

A distribution is a weighted empirical one (``Sample``): sorted points, each of equal weight, and
the number of observations they stand for. A live window is its own points. A model card keeps a
version's validation scores as quantiles (``model_workers.references``), which stand for the
validation rows they summarise: distances read the points, tests read the number of observations.

Pure: no I/O, no clock. Arguments no data could produce raise ``ValueError``; a quantity the data
cannot define is ``None``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

PSI_BINS = 10
"""PSI uses the reference's deciles as bin edges (the usual convention)."""
PSI_FLOOR = 1e-4
"""A bin's share is floored here before the logarithm, so an empty bin gives a finite PSI."""

Verdict = Literal["drift", "ok", "insufficient"]


@dataclass(frozen=True)
class Sample:
    """Sorted points of equal weight, standing for ``n`` observations."""

    points: NDArray[np.float64]
    n: int

    @classmethod
    def of(cls, values: ArrayLike, n: int | None = None) -> Sample:
        points = np.sort(np.asarray(values, dtype=np.float64).ravel())
        if points.size and not np.all(np.isfinite(points)):
            raise ValueError("a sample must hold finite numbers only")
        size = int(points.size) if n is None else int(n)
        if size < 0 or (points.size == 0) != (size == 0):
            raise ValueError(f"a sample of {points.size} points cannot stand for {size}")
        return cls(points, size)

    def __len__(self) -> int:
        return self.n

    def cdf(self, at: NDArray[np.float64]) -> NDArray[np.float64]:
        """Share of the points at or below each of ``at``."""
        return np.searchsorted(self.points, at, side="right") / self.points.size

    def share_at_least(self, threshold: float) -> float:
        """Share of the points at or above ``threshold`` (a positive rate for scores)."""
        below = np.searchsorted(self.points, threshold, side="left")
        return float(1.0 - below / self.points.size)

    def mean(self) -> float:
        return float(self.points.mean())


def _check_pair(reference: Sample, current: Sample) -> None:
    if reference.n == 0 or current.n == 0:
        raise ValueError("both samples need at least one observation")


def ks(reference: Sample, current: Sample) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov: the largest gap between the two CDFs, and its asymptotic
    p-value (the Kolmogorov distribution at the effective size n m / (n + m), as scipy's
    ``ks_2samp(method="asymp")``)."""
    _check_pair(reference, current)
    at = np.concatenate([reference.points, current.points])
    statistic = float(np.max(np.abs(reference.cdf(at) - current.cdf(at))))
    effective = reference.n * current.n / (reference.n + current.n)
    p_value = float(stats.kstwo.sf(statistic, max(1, round(effective))))
    return statistic, min(1.0, max(0.0, p_value))


def wasserstein(reference: Sample, current: Sample) -> float:
    """First Wasserstein (earth mover's) distance: the area between the two CDFs."""
    _check_pair(reference, current)
    at = np.unique(np.concatenate([reference.points, current.points]))
    if at.size < 2:
        return 0.0
    gaps = np.diff(at)
    left = at[:-1]
    return float(np.sum(np.abs(reference.cdf(left) - current.cdf(left)) * gaps))


def psi_edges(reference: Sample, bins: int = PSI_BINS) -> NDArray[np.float64]:
    """Inner bin edges: the reference's quantiles, repeated edges (ties) merged."""
    if bins < 2:
        raise ValueError(f"PSI needs at least 2 bins, got {bins}")
    inner = np.quantile(reference.points, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    return np.unique(inner)


def shares(sample: Sample, edges: NDArray[np.float64]) -> NDArray[np.float64]:
    """Share of the points in each bin: (-inf, e1], (e1, e2], ..., (ek, inf)."""
    counts = np.bincount(
        np.searchsorted(edges, sample.points, side="left"), minlength=edges.size + 1
    )
    return counts / sample.points.size


def psi_of_shares(expected: ArrayLike, actual: ArrayLike) -> float:
    """Population stability index: sum of (a - e) ln(a / e), shares floored at ``PSI_FLOOR``."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), PSI_FLOOR)
    a = np.maximum(np.asarray(actual, dtype=np.float64), PSI_FLOOR)
    if e.shape != a.shape or e.size == 0:
        raise ValueError("PSI needs two share vectors of the same, non-zero length")
    return float(np.sum((a - e) * np.log(a / e)))


def psi(reference: Sample, current: Sample, bins: int = PSI_BINS) -> float:
    """PSI of ``current`` against ``reference`` on the reference's deciles."""
    _check_pair(reference, current)
    edges = psi_edges(reference, bins)
    return psi_of_shares(shares(reference, edges), shares(current, edges))


def check_alpha(alpha: float, interval_seconds: float, horizon_seconds: float) -> float:
    """The level of one check so that a series of them, one per ``interval``, raises a false
    alarm over ``horizon`` with probability at most ``alpha`` (Bonferroni: valid however the
    checks depend on each other, e.g. overlapping windows or one shared reference)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if not (interval_seconds > 0 and horizon_seconds > 0):
        raise ValueError("interval and horizon must be positive durations")
    return alpha * min(1.0, interval_seconds / horizon_seconds)


def verdict(p_value: float | None, large: bool, alpha: float, enough: bool) -> Verdict:
    """Drift needs both: a test significant at the check's level, and an effect at least the
    practical minimum (so a huge window does not alarm on a negligible change)."""
    if not enough or p_value is None:
        return "insufficient"
    return "drift" if p_value < alpha and large else "ok"


def auc_null_sd(n_reference: int, n_current: int) -> float:
    """Standard deviation of a held-out ROC AUC under no difference (Mann-Whitney's null)."""
    if n_reference < 1 or n_current < 1:
        raise ValueError("both sides need at least one held-out row")
    return math.sqrt((n_reference + n_current + 1) / (12.0 * n_reference * n_current))


def auc_threshold(n_reference: int, n_current: int, alpha: float, floor: float) -> float:
    """The least domain-classifier AUC that is significant at ``alpha`` (one-sided) for these
    held-out sizes, and at least ``floor``."""
    z = float(stats.norm.isf(alpha))
    return max(floor, 0.5 + z * auc_null_sd(n_reference, n_current))


def auc_p_value(auc: float, n_reference: int, n_current: int) -> float:
    """One-sided p-value of a held-out domain-classifier AUC under no difference."""
    return float(stats.norm.sf((auc - 0.5) / auc_null_sd(n_reference, n_current)))

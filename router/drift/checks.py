"""The drift checks, as pure functions of the scores they are given.

* ``prediction``: one version's live scores against its reference (the validation scores its
  model card keeps, or a window of its own past traffic): PSI, Kolmogorov-Smirnov, Wasserstein,
  the positive rate. Drift when KS is significant at the check's level and the change is not
  negligible: PSI or the Wasserstein distance (in score units) reaches its minimum.
* ``paired``: on mirrored requests, the shadow's score minus the primary's, in the current window
  against a reference window: drift of the delta means the two versions no longer relate as they
  did (a tool that watches one model against its training data cannot see this). Drift when KS
  is significant and the Wasserstein distance of the deltas reaches its minimum.

Verdicts are ``drift``, ``ok``, ``insufficient`` (too few observations to say) or ``skipped``
(no reference to compare with).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from router.drift import stats
from router.drift.stats import Sample

CheckVerdict = Literal["drift", "ok", "insufficient", "skipped"]


@dataclass(frozen=True)
class Params:
    """The thresholds every check of one run uses (reported with the results)."""

    alpha: float
    """Bound on a false alarm of one check series over ``horizon`` seconds."""
    horizon: float
    interval: float
    """Seconds between two checks of the series: ``--every``, else the current window."""
    psi_min: float
    distance_min: float
    """Least Wasserstein distance, in score units (of scores, or of score deltas for pairs)."""
    min_samples: int

    @property
    def check_alpha(self) -> float:
        return stats.check_alpha(self.alpha, self.interval, self.horizon)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "check_alpha": self.check_alpha}


@dataclass(frozen=True)
class Reference:
    """What a version's live scores are compared with."""

    sample: Sample
    source: str
    """``training`` (the card's validation scores) or ``window`` (past traffic)."""


@dataclass(frozen=True)
class Distances:
    n_current: int
    n_reference: int
    psi: float
    ks: float
    ks_p: float
    wasserstein: float
    mean_current: float
    mean_reference: float

    @classmethod
    def between(cls, reference: Sample, current: Sample) -> Distances:
        ks, ks_p = stats.ks(reference, current)
        return cls(
            n_current=current.n,
            n_reference=reference.n,
            psi=stats.psi(reference, current),
            ks=ks,
            ks_p=ks_p,
            wasserstein=stats.wasserstein(reference, current),
            mean_current=current.mean(),
            mean_reference=reference.mean(),
        )


@dataclass(frozen=True)
class CheckResult:
    check: Literal["prediction", "paired"]
    version: str
    """The version checked; for ``paired``, ``<shadow>-vs-<primary>``."""
    verdict: CheckVerdict
    reason: str
    reference_source: str | None
    distances: Distances | None
    positive_rate_current: float | None = None
    positive_rate_reference: float | None = None

    @property
    def drift(self) -> bool:
        return self.verdict == "drift"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["drift"] = self.drift
        return data


def prediction(
    version: str,
    scores: Sequence[float],
    reference: Reference | None,
    threshold: float,
    params: Params,
) -> CheckResult:
    """One version's live score distribution and positive rate against its reference."""
    if reference is None:
        return CheckResult("prediction", version, "skipped", "no reference scores", None, None)
    if len(scores) == 0:
        return CheckResult(
            "prediction", version, "insufficient", "no scores in the window", reference.source, None
        )
    current = Sample.of(scores)
    distances = Distances.between(reference.sample, current)
    enough = current.n >= params.min_samples
    large = distances.psi >= params.psi_min or distances.wasserstein >= params.distance_min
    verdict = stats.verdict(distances.ks_p, large, params.check_alpha, enough)
    size = (
        f"PSI {distances.psi:.3f} (minimum {params.psi_min:g}) or Wasserstein "
        f"{distances.wasserstein:.3f} (minimum {params.distance_min:g})"
    )
    reason = _reason(verdict, distances, size, large, params)
    return CheckResult(
        "prediction",
        version,
        verdict,
        reason,
        reference.source,
        distances,
        current.share_at_least(threshold),
        reference.sample.share_at_least(threshold),
    )


def paired(
    primary: str,
    shadow: str,
    deltas: Sequence[float],
    reference_deltas: Sequence[float],
    params: Params,
) -> CheckResult:
    """Shadow-minus-primary score deltas on mirrored requests, now against the reference window."""
    name = f"{shadow}-vs-{primary}"
    if len(reference_deltas) == 0:
        return CheckResult(
            "paired", name, "skipped", "no pairs in the reference window", None, None
        )
    if len(deltas) == 0:
        return CheckResult("paired", name, "insufficient", "no pairs in the window", "window", None)
    reference, current = Sample.of(reference_deltas), Sample.of(deltas)
    distances = Distances.between(reference, current)
    enough = min(current.n, reference.n) >= params.min_samples
    large = distances.wasserstein >= params.distance_min
    verdict = stats.verdict(distances.ks_p, large, params.check_alpha, enough)
    size = f"Wasserstein {distances.wasserstein:.3f} (minimum {params.distance_min:g})"
    reason = _reason(verdict, distances, size, large, params)
    return CheckResult("paired", name, verdict, reason, "window", distances)


def _reason(verdict: str, d: Distances, size: str, large: bool, params: Params) -> str:
    if verdict == "insufficient":
        return (
            f"{min(d.n_current, d.n_reference)} observations, fewer than the "
            f"{params.min_samples} a verdict needs"
        )
    significant = d.ks_p < params.check_alpha
    test = f"KS {d.ks:.3f} (p = {d.ks_p:.3g}, level {params.check_alpha:.3g})"
    if verdict == "drift":
        return f"{test} and {size}"
    if not significant and not large:
        return f"neither significant nor large: {test}, {size}"
    return f"{test}, {size}: " + ("too small to matter" if significant else "not significant")


def any_drift(results: Sequence[CheckResult]) -> bool:
    return any(r.drift for r in results)

"""Input drift with Evidently (an optional extra: ``pip install 'turnout[drift]'``).

Text: Evidently's domain classifier (``abs_text_content_drift``) learns to tell reference texts
from current ones on half of them and reports its ROC AUC on the other half. Under no drift that
AUC is Mann-Whitney's null (mean 1/2, known spread for the held-out sizes), so the threshold we
hand Evidently is the least AUC significant at the check's level, and never below
``drift_input_auc_min``: Evidently's own verdict in the HTML report is then ours.

Features: Evidently's per-column Kolmogorov-Smirnov test at the check's level split over the
columns (Bonferroni); drift when any column drifts.

Without Evidently installed, ``EvidentlyMissing`` says how to get it.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from router.drift import stats

INSTALL_HINT = (
    "input drift needs Evidently: pip install 'turnout[drift]' (Evidently 0.7.23 with pandas<3); "
    "the prediction checks ran without it"
)
TEXT_METHOD = "abs_text_content_drift"


class EvidentlyMissing(RuntimeError):
    def __init__(self) -> None:
        super().__init__(INSTALL_HINT)


def evidently_installed() -> bool:
    try:
        import evidently  # noqa: F401
        import pandas  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class InputCheck:
    verdict: Literal["drift", "ok", "insufficient", "skipped"]
    reason: str
    kind: str | None = None
    """``text`` or ``features``."""
    n_reference: int = 0
    n_current: int = 0
    method: str | None = None
    statistic: float | None = None
    """Text: the domain classifier's AUC; features: the smallest column p-value."""
    threshold: float | None = None
    """Text: the least AUC that counts; features: the per-column p-value level."""
    p_value: float | None = None
    columns: dict[str, float] = field(default_factory=dict)
    """Features: each column's KS p-value."""
    html: str | None = None
    """The Evidently report written for this check."""

    @property
    def drift(self) -> bool:
        return self.verdict == "drift"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "drift": self.drift}


def input_kind(inputs: Sequence[Mapping[str, Any]]) -> str | None:
    kinds = {"text" if "text" in i else "features" if "features" in i else None for i in inputs}
    return kinds.pop() if len(kinds) == 1 else None


def _sample(rows: Sequence[Mapping[str, Any]], limit: int, seed: int) -> list[Mapping[str, Any]]:
    if len(rows) <= limit:
        return list(rows)
    return random.Random(seed).sample(list(rows), limit)


def check_inputs(
    reference: Sequence[Mapping[str, Any]],
    current: Sequence[Mapping[str, Any]],
    alpha: float,
    auc_min: float,
    min_samples: int,
    max_rows: int,
    html: Path | None,
    seed: int = 0,
) -> InputCheck:
    """Evidently's data drift preset on captured inputs; raises ``EvidentlyMissing``."""
    if not evidently_installed():
        raise EvidentlyMissing
    kind = input_kind([*reference, *current])
    if kind is None:
        return InputCheck(
            "skipped", "reference and current inputs are not of one kind (text or features)"
        )
    ref = _sample(reference, max_rows, seed)
    cur = _sample(current, max_rows, seed + 1)
    if min(len(ref), len(cur)) < min_samples:
        return InputCheck(
            "insufficient",
            f"{min(len(ref), len(cur))} inputs, fewer than the {min_samples} a verdict needs",
            kind,
            len(ref),
            len(cur),
        )
    if kind == "text":
        return _text(ref, cur, alpha, auc_min, html)
    return _features(ref, cur, alpha, html)


def _run(
    reference: Any, current: Any, definition: Any, preset: Any, html: Path | None
) -> tuple[list[dict[str, Any]], str | None]:
    from evidently import Dataset, Report

    snapshot = Report([preset]).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    written = None
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(html))
        written = str(html)
    drifts = [
        m
        for m in snapshot.dict()["metrics"]
        if m.get("config", {}).get("type") == "evidently:metric_v2:ValueDrift"
    ]
    return drifts, written


def _text(
    ref: list[Mapping[str, Any]],
    cur: list[Mapping[str, Any]],
    alpha: float,
    auc_min: float,
    html: Path | None,
) -> InputCheck:
    import pandas as pd
    from evidently import DataDefinition
    from evidently.presets import DataDriftPreset

    # Evidently holds out half of the rows (shuffled) to score its domain classifier.
    n_ref, n_cur = max(1, len(ref) // 2), max(1, len(cur) // 2)
    threshold = stats.auc_threshold(n_ref, n_cur, alpha, auc_min)
    drifts, written = _run(
        pd.DataFrame({"text": [str(r["text"]) for r in ref]}),
        pd.DataFrame({"text": [str(r["text"]) for r in cur]}),
        DataDefinition(text_columns=["text"]),
        DataDriftPreset(text_method=TEXT_METHOD, text_threshold=threshold),
        html,
    )
    auc = float(drifts[0]["value"])
    p_value = stats.auc_p_value(auc, n_ref, n_cur)
    drift = auc > threshold
    reason = (
        f"domain classifier AUC {auc:.3f} "
        f"{'above' if drift else 'within'} the threshold {threshold:.3f} "
        f"(p = {p_value:.3g}, level {alpha:.3g}, minimum {auc_min:g})"
    )
    return InputCheck(
        "drift" if drift else "ok",
        reason,
        "text",
        len(ref),
        len(cur),
        TEXT_METHOD,
        auc,
        threshold,
        p_value,
        html=written,
    )


def _features(
    ref: list[Mapping[str, Any]], cur: list[Mapping[str, Any]], alpha: float, html: Path | None
) -> InputCheck:
    import pandas as pd
    from evidently import DataDefinition
    from evidently.presets import DataDriftPreset

    names = sorted({n for r in [*ref, *cur] for n in r["features"]})
    level = alpha / max(1, len(names))
    drifts, written = _run(
        pd.DataFrame([r["features"] for r in ref], columns=names),
        pd.DataFrame([r["features"] for r in cur], columns=names),
        DataDefinition(numerical_columns=names),
        DataDriftPreset(num_method="ks", num_threshold=level),
        html,
    )
    columns = {str(m["config"]["column"]): float(m["value"]) for m in drifts}
    drifted = sorted(c for c, p in columns.items() if p < level)
    smallest = min(columns.values()) if columns else None
    reason = f"columns drifted at p < {level:.3g} ({alpha:.3g} over {len(names)} columns): " + (
        ", ".join(drifted) if drifted else "none"
    )
    return InputCheck(
        "drift" if drifted else "ok",
        reason,
        "features",
        len(ref),
        len(cur),
        "ks",
        smallest,
        level,
        smallest,
        columns,
        written,
    )

"""router.drift.inputs with the real Evidently: text and feature drift, the report, its absence."""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.shifted_traffic import shifted
from router.core.settings import Settings
from router.drift import inputs
from router.drift.inputs import EvidentlyMissing, check_inputs
from tests.conftest import requires_ci_tool


@pytest.fixture(scope="module")
def tweets() -> list[str]:
    requires_ci_tool(inputs.evidently_installed(), "evidently (pip install 'turnout[drift]')")
    with Settings().dataset.open(newline="", encoding="utf-8") as fh:
        texts = [row["tweet"] for row in csv.DictReader(fh)]
    # The file is sorted by text: neighbouring rows are alike, so sample it at random.
    return random.Random(7).sample(texts, 3000)


def test_text_drift_is_found_and_reported(tweets: list[str], tmp_path: Path) -> None:
    reference = [{"text": t} for t in tweets[:600]]
    current = [{"text": shifted(t)} for t in tweets[600:1200]]
    html = tmp_path / "drift.html"
    result = check_inputs(reference, current, 0.05 / 365, 0.6, 100, 1000, html)
    assert result.verdict == "drift" and result.kind == "text"
    assert result.statistic is not None and result.threshold is not None
    assert result.statistic > result.threshold >= 0.6
    assert result.html == str(html) and html.stat().st_size > 100_000
    assert "<html" in html.read_text(errors="replace")[:2000].lower()


def test_no_shift_is_ok(tweets: list[str]) -> None:
    reference = [{"text": t} for t in tweets[1200:1800]]
    current = [{"text": t} for t in tweets[1800:2400]]
    result = check_inputs(reference, current, 0.05 / 365, 0.6, 100, 1000, None)
    assert result.verdict == "ok" and result.html is None
    assert result.p_value is not None and result.p_value > 0.05 / 365


def test_too_few_inputs(tweets: list[str]) -> None:
    result = check_inputs(
        [{"text": t} for t in tweets[:50]],
        [{"text": t} for t in tweets[50:90]],
        0.01,
        0.6,
        100,
        1000,
        None,
    )
    assert result.verdict == "insufficient" and "fewer than the 100" in result.reason


def test_feature_drift_names_the_column(tmp_path: Path) -> None:
    requires_ci_tool(inputs.evidently_installed(), "evidently")
    rng = np.random.default_rng(0)
    reference = [
        {"features": {"a": float(x), "b": float(y)}} for x, y in rng.normal(0, 1, (400, 2))
    ]
    current = [
        {"features": {"a": float(x) + 0.8, "b": float(y)}} for x, y in rng.normal(0, 1, (400, 2))
    ]
    result = check_inputs(reference, current, 0.001, 0.6, 100, 1000, tmp_path / "f.html")
    assert result.verdict == "drift" and result.kind == "features"
    assert result.columns["a"] < 0.0005 < result.columns["b"]
    assert "a" in result.reason


def test_mixed_inputs_are_skipped() -> None:
    requires_ci_tool(inputs.evidently_installed(), "evidently")
    result = check_inputs([{"text": "x"}], [{"features": {"a": 1.0}}], 0.01, 0.6, 1, 10, None)
    assert result.verdict == "skipped"


def test_without_evidently_the_message_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "evidently", None)
    assert not inputs.evidently_installed()
    with pytest.raises(EvidentlyMissing, match=r"pip install 'turnout\[drift\]'"):
        check_inputs([{"text": "a"}], [{"text": "b"}], 0.01, 0.6, 1, 10, None)

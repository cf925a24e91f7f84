"""k-class reports: the feedback confusion table per variant and Bowker's paired test."""

from __future__ import annotations

import pytest
from scipy import stats

from router.reports.experiment import feedback_confusion, per_class
from router.reports.shadow import pair_row
from router.reports.stats import bowker, mcnemar
from router.storage import keys

TABLE = {
    "0": {"0": 10, "1": 2, "2": 3},
    "1": {"0": 5, "1": 20, "2": 1},
    "2": {"0": 1, "1": 4, "2": 30},
}


def test_bowker_golden() -> None:
    result = bowker(TABLE)
    # (2-5)^2/7 + (3-1)^2/4 + (1-4)^2/5, three discordant pairs
    assert result["statistic"] == pytest.approx(9 / 7 + 1.0 + 9 / 5)
    assert result["df"] == 3
    assert result["p_value"] == pytest.approx(stats.chi2.sf(9 / 7 + 1.0 + 9 / 5, 3))


def test_bowker_without_discordant_pairs_has_no_p_value() -> None:
    assert bowker({"0": {"0": 4}, "2": {"2": 1}}) == {
        "statistic": 0.0,
        "df": 0,
        "p_value": None,
        "method": "bowker",
    }


def test_bowker_on_two_classes_is_mcnemar_without_correction() -> None:
    table = {"0": {"0": 50, "1": 30}, "1": {"0": 10, "1": 60}}
    uncorrected = (30 - 10) ** 2 / 40
    assert bowker(table)["statistic"] == pytest.approx(uncorrected)
    assert mcnemar(10, 30)["statistic"] == pytest.approx((abs(30 - 10) - 1) ** 2 / 40)


def raw_pairs(table: dict[str, dict[str, int]]) -> dict[str, str]:
    raw = {
        f"{keys.SHADOW_CONFUSION}{p}|{s}": str(n)
        for p, row in table.items()
        for s, n in row.items()
    }
    pairs = sum(sum(row.values()) for row in table.values())
    agree = sum(table[k].get(k, 0) for k in table)
    return {**raw, keys.SHADOW_PAIRS: str(pairs), keys.SHADOW_AGREE: str(agree)}


def test_shadow_rows_use_bowker_for_three_classes_and_mcnemar_for_two() -> None:
    three = pair_row("v1", "v2", raw_pairs(TABLE))
    assert three["mcnemar"]["method"] == "bowker" and three["mcnemar"]["df"] == 3
    assert three["positive_rate"] == {"primary": None, "shadow": None}
    two = pair_row("v1", "v2", raw_pairs({"0": {"0": 5, "1": 3}, "1": {"0": 1, "1": 9}}))
    assert two["mcnemar"]["b"] == 1 and two["mcnemar"]["c"] == 3
    named = pair_row("v1", "v2", raw_pairs({"false": {"true": 2}, "true": {"false": 6}}))
    assert (named["mcnemar"]["b"], named["mcnemar"]["c"]) == (6, 2)


def test_feedback_confusion_and_per_class_precision_recall() -> None:
    raw = {
        f"{keys.FEEDBACK_CONFUSION}0|0": "8",
        f"{keys.FEEDBACK_CONFUSION}0|1": "2",
        f"{keys.FEEDBACK_CONFUSION}2|2": "5",
        f"{keys.FEEDBACK_CONFUSION}1|2": "1",
        keys.FEEDBACK_N: "16",
    }
    table = feedback_confusion(raw)
    assert table == {"0": {"0": 8, "1": 2}, "1": {"2": 1}, "2": {"2": 5}}
    classes = per_class(table)
    assert classes["0"] == {
        "served": 10,
        "actual": 8,
        "correct": 8,
        "precision": 0.8,
        "recall": 1.0,
    }
    assert classes["1"]["precision"] == 0.0 and classes["1"]["recall"] == 0.0
    assert classes["2"] == {
        "served": 5,
        "actual": 6,
        "correct": 5,
        "precision": 1.0,
        "recall": 5 / 6,
    }

"""Chart specs: series names and values the browser tests look for, from plain report data."""

from __future__ import annotations

import math

from router.console import charts
from router.storage import keys


def test_weights_follow_the_rollout_transitions_inside_the_range() -> None:
    rollout = {
        "history": [
            {"ts": 100.0, "to": {"weights": {"v1": 99.0, "v2": 1.0}}, "from": None},
            {"ts": 500.0, "to": {"weights": {"v1": 90.0, "v2": 10.0}}},
            {"ts": 900.0, "to": {"weights": {"v1": 50.0, "v2": 50.0}}},
        ]
    }
    steps = charts.weights_over_time(rollout, {"v1": 50.0, "v2": 50.0}, 300.0, 1000.0)
    assert steps["v2"] == [[300.0, 1.0], [500.0, 10.0], [900.0, 50.0], [1000.0, 50.0]]
    flat = charts.weights_over_time(None, {"v1": 90.0, "v2": 10.0}, 0.0, 60.0)
    assert flat == {"v1": [[0.0, 90.0], [60.0, 90.0]], "v2": [[0.0, 10.0], [60.0, 10.0]]}


def history() -> dict[str, object]:
    return {
        "t": [0, 60],
        "total": [4, 0],
        "range": {"step_s": 60},
        "variants": {
            "v1": {
                "assigned": [3, 0],
                "errors": [1, 0],
                "share_pct": [75.0, None],
                "latency_mean_ms": [5.0, None],
            },
            "v2": {
                "assigned": [1, 0],
                "errors": [0, 0],
                "share_pct": [25.0, None],
                "latency_mean_ms": [7.0, None],
            },
        },
        "shadow": {
            "v1>v3": {"primary": "v1", "shadow": "v3", "agreement": [0.5, None]},
        },
    }


def test_time_series_names() -> None:
    h = history()
    weights = {"v1": [[0, 90.0], [60, 90.0]], "v2": [[0, 10.0], [60, 10.0]]}
    names = [s["name"] for s in charts.traffic(h, weights)["series"]]
    assert names == ["v1 share", "v1 weight", "v2 share", "v2 weight"]
    volume = charts.volume(h)["series"]
    assert [s["name"] for s in volume] == ["v1 requests", "v2 requests", "errors"]
    assert volume[-1]["data"] == [[0, 1], [60, 0]]
    assert [s["name"] for s in charts.agreement(h)["series"]] == ["v1 → v3 agreement"]


def test_forest_rows_per_variant_and_metric() -> None:
    test = {"difference": 0.02, "interval": [-0.01, 0.05], "p_value": 0.2}
    report = {
        "comparisons": [
            {
                "variant": "v2",
                "control": "v1",
                "reward": test,
                "accuracy": test,
                "positive_rate": {"difference": None, "interval": None, "p_value": None},
                "error_rate": test,
            }
        ]
    }
    spec = charts.forest(report)
    assert [s["name"] for s in spec["series"]] == ["difference", "95% interval"]
    assert [r["metric"] for r in spec["rows"]] == [
        "reward",
        "accuracy",
        "positive_rate",
        "error_rate",
    ]
    assert spec["rows"][2]["estimate"] is None
    assert spec["rows"][0]["low"] == -0.01


def test_posterior_densities_integrate_to_about_one() -> None:
    bandit = {
        "arms": [
            {"arm": "v1", "alpha": 30.0, "beta": 70.0, "mean": 0.3},
            {"arm": "v2", "alpha": 2.0, "beta": 2.0, "mean": 0.5},
        ]
    }
    spec = charts.posteriors(bandit)
    assert [s["name"] for s in spec["series"]] == ["v1 posterior", "v2 posterior"]
    data = spec["series"][0]["data"]
    width = data[1][0] - data[0][0]
    area = sum(y for _, y in data) * width
    assert math.isclose(area, 1.0, rel_tol=0.02)


def test_confusion_cells_and_delta_histogram() -> None:
    row = {"primary": "v1", "shadow": "v3", "confusion": {"0": {"0": 5, "1": 2}, "1": {"1": 9}}}
    spec = charts.confusion(row)
    assert spec["x"] == ["0", "1"] and spec["y"] == ["0", "1"]
    assert sorted(spec["series"][0]["data"]) == [[0, 0, 5], [1, 0, 2], [1, 1, 9]]
    raw = {f"{keys.SHADOW_DELTA_BUCKET}0.05": "4", f"{keys.SHADOW_DELTA_BUCKET}+Inf": "1"}
    bins = charts.score_deltas(row, raw)["series"][0]["bins"]
    assert sum(b["count"] for b in bins) == 5
    assert bins[-1]["high"] is None and bins[-1]["count"] == 1


def test_gate_bands_one_chart_per_gate() -> None:
    looks = [
        {
            "ts": 10.0,
            "gates": [
                {"gate": "error_rate", "estimate": 0.01, "interval": [-0.01, 0.03]},
                {"gate": "reward", "estimate": None, "interval": None, "verdict": "waiting"},
            ],
        },
        {"ts": 40.0, "gates": [{"gate": "error_rate", "estimate": 0.0, "interval": [-0.01, 0.01]}]},
    ]
    specs = {s["gate"]: s for s in charts.gate_bands(looks)}
    error = specs["error_rate"]["series"]
    assert [s["name"] for s in error] == ["error_rate estimate", "error_rate interval"]
    assert error[1]["data"] == [[10.0, -0.01, 0.03], [40.0, -0.01, 0.01]]
    assert specs["reward"]["series"][0]["data"] == [[10.0, None]]

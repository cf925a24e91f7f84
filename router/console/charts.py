"""Chart specs: the reports' plain data shaped for the console's charts. Pure.

A spec is ``{"kind": ..., "series": [{"name": ..., ...}], ...}``; ``static/console.js`` turns
each kind into one ECharts option. Series names are decided here, so tests can ask a chart in
the browser for exactly these names. Times are epoch seconds.
"""

from __future__ import annotations

import math
from typing import Any

from scipy import stats as sps

from router.core.metrics import SCORE_DELTA_BUCKETS
from router.reports.experiment import COMPARED, dense_buckets
from router.storage import keys

DENSITY_POINTS = 161
Spec = dict[str, Any]


def _points(times: list[int], values: list[Any]) -> list[list[Any]]:
    return [[t, v] for t, v in zip(times, values, strict=True)]


def _series(name: str, style: str, data: list[list[Any]]) -> dict[str, Any]:
    return {"name": name, "style": style, "data": data}


def weights_over_time(
    rollout: dict[str, Any] | None,
    weights_now: dict[str, float],
    start: float,
    end: float,
) -> dict[str, list[list[float]]]:
    """Variant -> step points ``[t, percent]`` of the weights in force over ``[start, end]``:
    a rollout's transitions move them; without one they are today's weights throughout."""
    changes: list[tuple[float, dict[str, float]]] = []
    before: dict[str, float] | None = None
    for item in (rollout or {}).get("history", []):
        to = item.get("to")
        ts = float(item.get("ts", 0) or 0)
        if not isinstance(to, dict) or not isinstance(to.get("weights"), dict):
            continue
        if ts <= start:
            before = to["weights"]
        elif ts <= end:
            if before is None and not changes and isinstance(item.get("from"), dict):
                before = item["from"].get("weights")
            changes.append((ts, to["weights"]))
    first = before or (changes[0][1] if changes else weights_now)
    steps = [(start, first), *changes, (end, changes[-1][1] if changes else first)]
    names = list(dict.fromkeys([*weights_now, *(v for _, w in steps for v in w)]))
    return {name: [[t, float(w.get(name, 0.0))] for t, w in steps] for name in names}


def traffic(history: dict[str, Any], weights: dict[str, list[list[float]]]) -> Spec:
    """Each variant's share of traffic per point, next to the weight in force."""
    times = history["t"]
    series: list[dict[str, Any]] = []
    for name, row in history["variants"].items():
        series.append(_series(f"{name} share", "line", _points(times, row["share_pct"])))
        if name in weights:
            series.append(_series(f"{name} weight", "step", weights[name]))
    return {"kind": "timeseries", "unit": "%", "max": 100, "series": series}


def volume(history: dict[str, Any]) -> Spec:
    """Requests per point by variant (stacked), and the requests nothing could answer."""
    times = history["t"]
    rows = history["variants"]
    series = [
        _series(f"{name} requests", "stack", _points(times, row["assigned"]))
        for name, row in rows.items()
    ]
    errors = [0] * len(times)
    for row in rows.values():
        errors = [a + b for a, b in zip(errors, row["errors"], strict=True)]
    series.append(_series("errors", "line", _points(times, errors)))
    step = history["range"]["step_s"]
    return {"kind": "timeseries", "unit": "requests", "step_s": step, "series": series}


def latency(history: dict[str, Any]) -> Spec:
    times = history["t"]
    series = [
        _series(f"{name} mean latency", "line", _points(times, row["latency_mean_ms"]))
        for name, row in history["variants"].items()
    ]
    return {"kind": "timeseries", "unit": "ms", "series": series}


def forest(report: dict[str, Any]) -> Spec:
    """Every non-control variant's difference from the control, per metric, with its 95%
    interval; a row without data yet has no point."""
    rows = []
    for item in report["comparisons"]:
        for metric in COMPARED:
            test = item[metric]
            interval = test.get("interval")
            rows.append(
                {
                    "label": f"{item['variant']} vs {item['control']}: {metric}",
                    "variant": item["variant"],
                    "metric": metric,
                    "estimate": _finite(test.get("difference")),
                    "low": _finite(interval[0]) if interval else None,
                    "high": _finite(interval[1]) if interval else None,
                    "p": _finite(test.get("p_value")),
                }
            )
    return {
        "kind": "forest",
        "series": [{"name": "difference"}, {"name": "95% interval"}],
        "rows": rows,
    }


def _finite(value: Any) -> float | None:
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def posteriors(bandit: dict[str, Any]) -> Spec:
    """Each arm's Beta posterior as a density, over the range where any of them has mass."""
    arms = bandit["arms"]
    lows = [float(sps.beta.ppf(0.0005, a["alpha"], a["beta"])) for a in arms]
    highs = [float(sps.beta.ppf(0.9995, a["alpha"], a["beta"])) for a in arms]
    low, high = max(0.0, min(lows) - 0.01), min(1.0, max(highs) + 0.01)
    xs = [low + (high - low) * i / (DENSITY_POINTS - 1) for i in range(DENSITY_POINTS)]
    series = []
    for arm in arms:
        ys = sps.beta.pdf(xs, arm["alpha"], arm["beta"])
        data = [[round(x, 5), _finite(float(y))] for x, y in zip(xs, ys, strict=True)]
        series.append({"name": f"{arm['arm']} posterior", "data": data, "mean": arm["mean"]})
    return {"kind": "densities", "series": series}


def bandit_shares(bandit: dict[str, Any]) -> Spec:
    arms = bandit["arms"]
    return {
        "kind": "bars",
        "categories": [a["arm"] for a in arms],
        "series": [
            {"name": "traffic share", "data": [a.get("traffic_share") for a in arms]},
            {"name": "P(best)", "data": [a.get("prob_best") for a in arms]},
        ],
    }


def confusion(row: dict[str, Any]) -> Spec:
    """Primary label (rows) against the shadow's label (columns), counts as a heatmap."""
    table: dict[str, dict[str, int]] = row["confusion"]
    ys = sorted(table)
    xs = sorted({s for r in table.values() for s in r})
    cells = [[xs.index(s), ys.index(p), n] for p, r in table.items() for s, n in r.items()]
    return {
        "kind": "heatmap",
        "x": xs,
        "y": ys,
        "x_title": f"{row['shadow']} (shadow)",
        "y_title": f"{row['primary']} (primary)",
        "series": [{"name": f"{row['primary']} → {row['shadow']}", "data": cells}],
    }


def score_deltas(row: dict[str, Any], raw: dict[str, str]) -> Spec:
    """The shadow's score minus the primary's, per mirrored request, as a histogram."""
    bounds, cumulative = dense_buckets(raw, keys.SHADOW_DELTA_BUCKET, SCORE_DELTA_BUCKETS)
    bins = []
    previous_bound, previous_count = -math.inf, 0
    for bound, count in zip(bounds, cumulative, strict=True):
        bins.append(
            {
                "low": None if math.isinf(previous_bound) else previous_bound,
                "high": None if math.isinf(bound) else bound,
                "count": count - previous_count,
            }
        )
        previous_bound, previous_count = bound, count
    return {
        "kind": "histogram",
        "series": [{"name": f"{row['primary']} → {row['shadow']} score delta", "bins": bins}],
    }


def agreement(history: dict[str, Any]) -> Spec:
    times = history["t"]
    series = [
        _series(
            f"{pair['primary']} → {pair['shadow']} agreement",
            "line",
            _points(times, pair["agreement"]),
        )
        for pair in history["shadow"].values()
    ]
    return {"kind": "timeseries", "unit": "share", "max": 1, "series": series}


def rollout_steps(report: dict[str, Any], looks: list[dict[str, Any]], now: float) -> Spec | None:
    """The candidate's weight over time: each transition and each kept look."""
    rollout = report.get("rollout")
    if rollout is None:
        return None
    candidate = rollout["candidate"]
    points: list[tuple[float, float]] = []
    for item in report.get("history", []):
        to = item.get("to")
        if isinstance(to, dict) and isinstance(to.get("weights"), dict):
            points.append((float(item.get("ts", 0)), float(to["weights"].get(candidate, 0.0))))
    for look in looks:
        if look.get("percent") is not None and look.get("phase") in ("running", "paused", "halted"):
            points.append((float(look["ts"]), float(look["percent"])))
    points.sort()
    if points:
        points.append((now, float(report["weights"].get(candidate, 0.0))))
    return {
        "kind": "timeseries",
        "unit": "%",
        "max": 100,
        "series": [_series(f"{candidate} weight", "step", [list(p) for p in points])],
        "steps": rollout["steps"],
    }


def gate_bands(looks: list[dict[str, Any]]) -> list[Spec]:
    """One chart per gate: its estimate and its interval at each kept look."""
    by_gate: dict[str, dict[str, list[list[Any]]]] = {}
    for look in looks:
        ts = float(look.get("ts", 0))
        for gate in look.get("gates") or []:
            name = str(gate.get("gate"))
            item = by_gate.setdefault(name, {"estimate": [], "interval": [], "verdict": []})
            interval = gate.get("interval") or [None, None]
            item["estimate"].append([ts, _finite(gate.get("estimate"))])
            item["interval"].append([ts, _finite(interval[0]), _finite(interval[1])])
            item["verdict"].append([ts, gate.get("verdict")])
    return [
        {
            "kind": "band",
            "gate": name,
            "series": [
                {"name": f"{name} estimate", "data": item["estimate"]},
                {"name": f"{name} interval", "data": item["interval"]},
            ],
            "verdicts": item["verdict"],
        }
        for name, item in by_gate.items()
    ]


def sparkline(history: dict[str, Any]) -> Spec:
    times = history["t"]
    return {
        "kind": "spark",
        "series": [{"name": "requests", "data": _points(times, history["total"])}],
    }

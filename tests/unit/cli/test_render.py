"""Every table the CLI prints, rendered at 80 and 160 columns: readable in full at 80 (stacked
rows where a table would not fit), a table using the whole width at 160."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console, Group, RenderableType
from rich.text import Text

from router.cli.render import (
    Grid,
    bandit_view,
    events_table,
    flags_table,
    models_table,
    replay_table,
    report_view,
    rollout_view,
    shadow_view,
    status_table,
)
from router.config.loader import parse_experiment
from router.reports.experiment import BanditLive, build_report
from router.reports.reads import Recorded, ShadowRecorded
from router.reports.shadow import build_shadow_report
from router.rollout.gates import ANYTIME, GateResult
from router.rollout.report import rollout_report
from router.rollout.state import RolloutState, fingerprint
from router.storage import keys

NOW = 1_800_000_000.0
CANARY = """
name: profanity-v2-canary
model: profanity
control: v1
variants:
  v1: {url: "http://127.0.0.1:8101"}
  v2: {url: "http://127.0.0.1:8102"}
  v3: {url: "http://127.0.0.1:8103"}
policy: {kind: canary, weights: {v1: 80, v2: 10, v3: 10}, sticky: user_id}
rollout:
  candidate: v2
  steps: [5, 25, 50, 100]
  interval: 10m
  gates:
    - {metric: error_rate, max_increase: 0.005}
    - {metric: reward, max_decrease: 0.01, label_delay: 5m}
"""
BANDIT = """
name: profanity-bandit
model: profanity
control: v1
variants:
  v1: {url: "http://127.0.0.1:8101"}
  v2: {url: "http://127.0.0.1:8102"}
  v3: {url: "http://127.0.0.1:8103"}
policy: {kind: bandit, arms: [v1, v2, v3], reward: feedback}
"""


def experiment(text: str) -> Any:
    return parse_experiment(text, Path("x.yaml")).experiment


def counters(assigned: int, errors: int, positive: int, fb: int, good: int) -> dict[str, str]:
    return {
        keys.ASSIGNED: str(assigned),
        keys.SERVED: str(assigned - errors),
        keys.ERRORS: str(errors),
        keys.FALLBACKS: "3",
        keys.LATENCY_SUM: str(assigned * 12.345),
        f"{keys.LATENCY_BUCKET}10": str(assigned // 2),
        f"{keys.LATENCY_BUCKET}25": str(assigned - assigned // 2),
        keys.PREDICTIONS: str(assigned),
        keys.LABELLED: str(assigned),
        keys.POSITIVE: str(positive),
        keys.SCORED: str(assigned),
        keys.SCORE_SUM: str(assigned * 0.4321),
        keys.SCORE_SUMSQ: str(assigned * 0.25),
        keys.FEEDBACK_N: str(fb),
        keys.FEEDBACK_SUM: str(good),
        keys.FEEDBACK_SUMSQ: str(good),
        keys.FEEDBACK_BINARY: str(fb),
        keys.FEEDBACK_LABELLED: str(fb),
        keys.FEEDBACK_CORRECT: str(good),
        keys.STICKY: str(assigned // 3),
    }


def canary_report() -> dict[str, Any]:
    recorded = Recorded(
        {
            "v1": counters(123_456, 120, 40_000, 9_876, 8_912),
            "v2": counters(15_432, 30, 5_100, 1_234, 1_100),
            "v3": counters(15_001, 12, 4_900, 1_111, 1_000),
        },
        {"v1": 123_456, "v2": 15_432, "v3": 15_001},
    )
    return build_report(experiment(CANARY), "5be892dd42aa", recorded, NOW)


def bandit_report() -> dict[str, Any]:
    bandit = {"v1:s": "812.5", "v1:f": "95.5", "v1:n": "908", "v2:s": "1300", "v2:f": "99"}
    bandit |= {"v2:n": "1399", "v3:s": "40", "v3:f": "10", "v3:n": "50"}
    recorded = Recorded(
        {v: counters(2_000 * (i + 1), 2, 800, 900, 800) for i, v in enumerate(("v1", "v2", "v3"))},
        {},
        bandit,
    )
    live = BanditLive(
        (1.0, 1.0),
        {
            "age_seconds": 0.42,
            "refresh_interval": 1.0,
            "redis": "up",
            "traffic_share": {"v1": 0.05, "v2": 0.9, "v3": 0.05},
        },
    )
    return build_report(experiment(BANDIT), "0123456789ab", recorded, NOW, live)


def shadow_report() -> dict[str, Any]:
    raw = {
        keys.SHADOW_PAIRS: "54321",
        keys.SHADOW_AGREE: "51234",
        f"{keys.SHADOW_CONFUSION}0|0": "30000",
        f"{keys.SHADOW_CONFUSION}0|1": "1500",
        f"{keys.SHADOW_CONFUSION}1|0": "1587",
        f"{keys.SHADOW_CONFUSION}1|1": "21234",
        keys.SHADOW_DELTA_N: "54321",
        keys.SHADOW_DELTA_SUM: "-1234.5",
        keys.SHADOW_DELTA_SUMSQ: "2000",
        f"{keys.SHADOW_DELTA_BUCKET}-0.05": "20000",
        f"{keys.SHADOW_DELTA_BUCKET}0.05": "34321",
        f"{keys.SHADOW_PRIMARY_LATENCY}10": "54321",
        f"{keys.SHADOW_SHADOW_LATENCY}25": "54321",
        keys.SHADOW_ERRORS: "12",
        keys.SHADOW_DROPPED: "345",
        keys.SHADOW_FEEDBACK_N: "4321",
        keys.SHADOW_PRIMARY_CORRECT: "4000",
        keys.SHADOW_SHADOW_CORRECT: "3900",
    }
    recorded = ShadowRecorded({("v1", "v3"): raw, ("v2", "v3"): dict(raw)}, [])
    return build_shadow_report("profanity-v2-canary", recorded)


def rollout_data() -> dict[str, Any]:
    exp = experiment(CANARY)
    gates = [
        GateResult(
            "error_rate",
            "inconclusive",
            ANYTIME,
            "needs 500 per arm",
            0.000123,
            [-0.00123, 0.00234],
            {"control": 12345.0, "candidate": 678.0},
        ).as_dict(),
        GateResult(
            "reward", "pass", ANYTIME, "within the margin", -0.0012, [-0.0081, 0.0057]
        ).as_dict(),
    ]
    state = RolloutState(
        fingerprint=fingerprint(exp),
        phase="running",
        step=1,
        window=2,
        step_started=NOW - 600,
        gates=gates,
        reason="advanced: every gate passes",
        next_action="advance to 50% when these pass: error_rate",
    )
    history = [
        {
            "ts": NOW - 900,
            "action": "advance",
            "actor": "rollout",
            "from": {"phase": "running", "percent": 5.0},
            "to": {"phase": "running", "percent": 25.0},
            "reason": "every gate passes at step 1 with 1,234 requests per arm",
        }
    ]
    return rollout_report(exp, state, history, {"v1": 75.0, "v2": 25.0}, NOW)


STATUS = {
    "experiments": [
        {
            "name": f"profanity-{kind}-experiment",
            "model": "profanity",
            "policy": kind,
            "control": "v1",
            "weights": {"v1": 90.0, "v2": 10.0},
            "config_version": "5be892dd42aa",
            "upstreams": {
                v: {"ready": True, "healthy": True, "breaker": "closed", "protocol": "turnout"}
                for v in ("v1", "v2", "v3")
            },
            "rollout": {
                "weights": {"v1": 75.0, "v2": 25.0},
                "rollout": {"candidate": "v2", "phase": "running", "step": 1, "steps": [5, 25]},
                "srm": {"status": "ok"},
            },
        }
        for kind in ("canary", "ab")
    ]
}
FLAGS = {
    "experiments": {
        "profanity-canary-experiment": {
            "flags": {
                "kill_switch": False,
                "forced_variant": "v1",
                "shadow_enabled": True,
                "frozen": False,
            },
            "overrides": {"forced_variant": "v1"},
        }
    }
}
EVENTS = [
    {
        "ts": NOW - i,
        "actor": "ops-team",
        "action": "rollback",
        "experiment": "profanity-canary-experiment",
        "flag": "forced_variant",
        "old": None,
        "new": "v1",
        "reason": "v2 answers 502 on every long tweet since the 14:00 deploy [see incident 42]",
    }
    for i in range(3)
]
CARDS = [
    {
        "model": "profanity",
        "version": v,
        "recipe": v,
        "metrics": {"f1": 0.9668, "roc_auc": 0.9792, "accuracy": 0.9442},
        "trained_at": "2026-11-30T12:00:00+00:00",
    }
    for v in ("v1", "v2", "v3")
]


def views() -> dict[str, RenderableType]:
    status = Group(status_table(STATUS, FLAGS))
    return {
        "report": report_view(canary_report()),
        "report (bandit)": report_view(bandit_report()),
        "bandit": bandit_view(bandit_report()["bandit"]),
        "shadow-report": shadow_view(shadow_report()),
        "rollout status": rollout_view(rollout_data()),
        "status": status,
        "flags list": Group(flags_table(FLAGS)),
        "flags history": Group(events_table(EVENTS)),
        "models list": Group(models_table(CARDS)),
        "replay": Group(replay_table({"v1": 900, "v2": 100}, {"v1": 0.9442, "v2": 0.9525})),
    }


def grids(view: RenderableType) -> Iterator[Grid]:
    if isinstance(view, Grid):
        yield view
    elif isinstance(view, Group):
        for part in view.renderables:
            yield from grids(part)


def render(view: RenderableType, width: int) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(view)
    return console.export_text()


@pytest.mark.parametrize("name", list(views()))
@pytest.mark.parametrize("width", [80, 160])
def test_every_table_is_readable_in_full(name: str, width: int) -> None:
    view = views()[name]
    text = render(view, width)
    assert max(len(line) for line in text.splitlines()) <= width
    assert "…" not in text, "a cell was cut"
    flat = " ".join(text.split())
    for grid in grids(view):
        for cells, _ in grid.rows:
            for cell in cells:
                assert " ".join(Text.from_markup(cell).plain.split()) in flat, (name, cell)


@pytest.mark.parametrize("name", ["report", "shadow-report", "status", "flags history"])
def test_wide_tables_stack_at_80_columns_and_fill_160(name: str) -> None:
    view = views()[name]
    narrow, wide = render(view, 80), render(view, 160)
    first = next(grids(view))
    assert first.width_needed() > 80
    assert "┃" not in narrow.split("\n\n")[0] or first.width_needed() <= 80
    widest = max(len(line) for line in wide.splitlines())
    if first.width_needed() <= 160:
        assert widest == 160  # the table stretches to the terminal
        assert "┃" in wide


def test_narrow_tables_stay_tables_at_80() -> None:
    text = render(Group(replay_table({"v1": 900}, {"v1": 0.9442})), 80)
    assert "┃" in text
    assert max(len(line) for line in text.splitlines()) == 80


def test_stacked_rows_name_every_column() -> None:
    text = render(shadow_view(shadow_report()), 80)
    assert "primary v1" in text
    assert "McNemar p" in text
    assert "acc (p/s) 0.926/0.903 (n=4321)" in " ".join(text.split())

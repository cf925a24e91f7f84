"""The rollout and srm blocks: every bad input is refused at load, with the file and the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.config.loader import parse_experiment
from router.core.errors import ConfigError

GOOD = """\
name: exp
model: profanity
control: v1
variants:
  v1: {url: "http://127.0.0.1:8101"}
  v2: {url: "http://127.0.0.1:8102"}
  v3: {url: "http://127.0.0.1:8103"}
policy:
  kind: canary
  weights: {v1: 100, v2: 0}
  sticky: user_id
shadow:
  targets: [v2]
rollout:
  candidate: v2
  steps: [1, 5, 25, 50, 100]
  interval: 10m
  max_interval: 2h
  min_samples: 500
  gates:
    - {metric: error_rate, max_increase: 0.005}
    - {metric: latency_p99, max_ratio: 1.25}
    - {metric: reward, max_decrease: 0.01, label_delay: 5m}
    - {metric: shadow_agreement, min: 0.95}
  alpha: 0.05
  on_fail: rollback
  on_inconclusive: pause
  on_success: promote
srm: {action: halt, p: 0.001}
"""


def refusal(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_experiment(text, Path("exp.yaml"))
    return info.value.detail


def test_the_issue_example_loads() -> None:
    exp = parse_experiment(GOOD, Path("exp.yaml")).experiment
    assert exp.rollout is not None and exp.srm is not None
    assert exp.rollout.interval == 600.0 and exp.rollout.max_interval == 7200.0
    reward = exp.rollout.gates[2]
    assert reward.metric == "reward" and reward.label_delay == 300.0
    assert exp.step_weights(25) == {"v1": 75.0, "v2": 25.0}


POLICY = "  kind: canary\n  weights: {v1: 100, v2: 0}\n  sticky: user_id\n"
STEPS = "[1, 5, 25, 50, 100]"
SRM = "srm: {action: halt, p: 0.001}\n"
LATENCY = "metric: latency_p99, max_ratio: 1.25"
BLUE_GREEN = GOOD.replace(POLICY, "  kind: blue_green\n  active: v1\n")
UNLEASH = GOOD.replace("sticky: user_id", "sticky: {key: user_id, hash: unleash}")

# (what, file text, line of the refusal, reason)
BAD = [
    ("steps not increasing", GOOD.replace(STEPS, "[1, 25, 5, 100]"), 16, "strictly increasing"),
    ("repeated step", GOOD.replace(STEPS, "[5, 5, 100]"), 16, "strictly increasing"),
    ("step above 100", GOOD.replace(STEPS, "[5, 150]"), 16, "(0, 100]"),
    ("step of 0", GOOD.replace(STEPS, "[0, 50]"), 16, "(0, 100]"),
    ("negative step", GOOD.replace(STEPS, "[-5, 50]"), 16, "(0, 100]"),
    ("no steps", GOOD.replace(STEPS, "[]"), 16, "at least 1"),
    (
        "candidate is the control",
        GOOD.replace("candidate: v2", "candidate: v1"),
        15,
        "is the control",
    ),
    ("candidate not a variant", GOOD.replace("candidate: v2", "candidate: v9"), 15, "not one of"),
    (
        "shadow gate, no shadow",
        GOOD.replace("shadow:\n  targets: [v2]\n", ""),
        22,
        "shadow_agreement needs",
    ),
    (
        "shadow gate, not shadowed",
        GOOD.replace("targets: [v2]", "targets: [v3]"),
        24,
        "shadow_agreement needs",
    ),
    ("unknown gate metric", GOOD.replace(LATENCY, "metric: cpu, max: 1"), 22, "does not match"),
    ("gate missing its margin", GOOD.replace("max_ratio: 1.25", "min: 1"), 22, "max_ratio"),
    (
        "repeated gate",
        GOOD.replace(LATENCY, "metric: error_rate, max_increase: 0.1"),
        21,
        "one gate per",
    ),
    ("blue-green policy", BLUE_GREEN.replace(SRM, ""), 9, "canary or ab"),
    (
        "bandit policy",
        GOOD.replace(POLICY, "  kind: bandit\n  arms: [v1, v2]\n").replace(
            "srm: {action: halt, p: 0.001}\n", ""
        ),
        9,
        "canary or ab",
    ),
    (
        "malformed interval",
        GOOD.replace("interval: 10m", "interval: 10 minutes"),
        17,
        "malformed duration",
    ),
    (
        "bare-number interval",
        GOOD.replace("interval: 10m", "interval: 600"),
        17,
        "malformed duration",
    ),
    (
        "malformed max_interval",
        GOOD.replace("max_interval: 2h", "max_interval: 2w"),
        18,
        "malformed duration",
    ),
    (
        "malformed label delay",
        GOOD.replace("label_delay: 5m", "label_delay: soon"),
        23,
        "malformed duration",
    ),
    (
        "max_interval below interval",
        GOOD.replace("max_interval: 2h", "max_interval: 1m"),
        18,
        "at least the interval",
    ),
    ("alpha out of range", GOOD.replace("alpha: 0.05", "alpha: 0.9"), 25, "alpha"),
    ("unknown on_fail", GOOD.replace("on_fail: rollback", "on_fail: panic"), 26, "on_fail"),
    (
        "unknown rollout key",
        GOOD.replace("  alpha: 0.05\n", "  alpha: 0.05\n  speed: fast\n"),
        26,
        "unknown key",
    ),
    (
        "srm on blue-green",
        BLUE_GREEN.split("rollout:")[0] + "srm: {action: halt}\n",
        13,
        "applies to weighted",
    ),
    ("srm bad action", GOOD.replace("action: halt", "action: shout"), 29, "srm.action"),
    ("srm p out of range", GOOD.replace("p: 0.001", "p: 0.9"), 29, "srm.p"),
    ("vendor scheme cannot express a step", UNLEASH.replace(STEPS, "[2.5, 100]"), 16, "step 2.5"),
]


@pytest.mark.parametrize(("what", "text", "line", "reason"), BAD, ids=[b[0] for b in BAD])
def test_bad_rollout_is_refused_with_file_and_line(
    what: str, text: str, line: int, reason: str
) -> None:
    detail = refusal(text)
    assert detail.startswith(f"exp.yaml:{line}:"), (what, detail)
    assert reason in detail, (what, detail)

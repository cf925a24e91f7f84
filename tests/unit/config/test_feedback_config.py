"""``feedback.auth``: refused when wrong, warned about when open on what rewards steer."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.config.loader import LoadedExperiment, parse_experiment, refuse_unsigned
from router.core.errors import ConfigError

ALLOWED = ["127.0.0.1"]
CANARY = """\
name: exp
model: profanity
control: v1
variants:
  v1: {url: "http://127.0.0.1:8101"}
  v2: {url: "http://127.0.0.1:8102"}
policy:
  kind: canary
  weights: {v1: 90, v2: 10}
"""
BANDIT = CANARY.replace(
    "  kind: canary\n  weights: {v1: 90, v2: 10}", "  kind: bandit\n  arms: [v1, v2]"
)
REWARD_ROLLOUT = (
    CANARY
    + """\
rollout:
  candidate: v2
  steps: [10, 50]
  interval: 60s
  gates:
    - {metric: reward, max_decrease: 0.05}
"""
)


def load(text: str) -> LoadedExperiment:
    return parse_experiment(text, Path("exp.yaml"), ALLOWED)


def test_the_default_is_open() -> None:
    assert load(CANARY).experiment.feedback.auth == "open"


@pytest.mark.parametrize("mode", ["open", "signed", "token"])
def test_each_mode_loads(mode: str) -> None:
    assert load(CANARY + f"feedback: {{auth: {mode}}}\n").experiment.feedback.auth == mode


@pytest.mark.parametrize(
    ("tail", "reason"),
    [
        (
            "feedback: {auth: hmac}\n",
            "exp.yaml:10: feedback.auth: Input should be 'open', 'signed' or 'token'",
        ),
        ("feedback: {auth: Signed}\n", "exp.yaml:10: feedback.auth: Input should be"),
        ("feedback: {secret: x}\n", "exp.yaml:10: feedback.secret: unknown key"),
        ("feedback: signed\n", "exp.yaml:10: feedback: Input should be a valid dictionary"),
    ],
)
def test_a_bad_value_is_refused_with_its_line_never_repaired(tail: str, reason: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load(CANARY + tail)
    assert reason in refused.value.detail


def test_bandits_and_reward_gates_warn_while_feedback_is_open() -> None:
    assert load(CANARY).experiment.warnings() == []
    [bandit] = load(BANDIT).experiment.warnings()
    assert bandit.startswith("policy bandit acts on rewards, and feedback.auth is open")
    [gate] = load(REWARD_ROLLOUT).experiment.warnings()
    assert gate.startswith("the rollout's reward gate acts on rewards")
    for mode in ("signed", "token"):
        assert load(BANDIT + f"feedback: {{auth: {mode}}}\n").experiment.warnings() == []


def test_signed_feedback_without_a_secret_is_refused_with_the_reason() -> None:
    signed = load(CANARY + "feedback: {auth: signed}\n")
    token = load(CANARY + "feedback: {auth: token}\n")
    scan = {Path("a.yaml"): signed, Path("b.yaml"): token}
    refused = refuse_unsigned(scan, feedback_secret=False)
    error = refused[Path("a.yaml")]
    assert isinstance(error, ConfigError)
    assert "feedback.auth: signed needs TURNOUT_FEEDBACK_SECRET" in error.detail
    assert refused[Path("b.yaml")] is token
    assert refuse_unsigned(scan, feedback_secret=True) == scan

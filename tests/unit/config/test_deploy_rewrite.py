"""deployed_yaml: what a deploy writes into an experiment file, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from router.config.loader import parse_experiment
from router.config.rewrite import deployed_yaml
from router.core.errors import ConfigError

BLUE_GREEN = """\
name: exp
model: profanity
control: v1
variants:
  v1: {url: "http://127.0.0.1:8101"}
policy: {kind: blue_green, active: v1}
retrain:
  rollout: {steps: [50, 100], interval: 1s, min_samples: 20}
"""


def test_shadow_adds_a_variant_and_a_shadow_target() -> None:
    text = deployed_yaml(BLUE_GREEN, "v9", "http://127.0.0.1:8109", "v9", "shadow", "note")
    assert text.startswith("# note\n")
    exp = parse_experiment(text, Path("exp.yaml")).experiment
    assert exp.variants["v9"].url == "http://127.0.0.1:8109" and exp.version_of("v9") == "v9"
    assert exp.shadow is not None and exp.shadow.targets == ["v9"] and exp.shadow.sample == 1.0
    assert exp.policy.kind == "blue_green" and exp.retrain is not None


def test_variant_mode_adds_no_traffic() -> None:
    text = deployed_yaml(BLUE_GREEN, "v9", "http://127.0.0.1:8109", "v9", "variant", "n")
    exp = parse_experiment(text, Path("exp.yaml")).experiment
    assert exp.shadow is None and exp.configured_weights() == {"v1": 100.0}


def test_rollout_turns_blue_green_into_a_stepped_canary() -> None:
    text = deployed_yaml(BLUE_GREEN, "v9", "http://127.0.0.1:8109", "v9", "rollout", "n")
    exp = parse_experiment(text, Path("exp.yaml")).experiment
    assert exp.policy.kind == "canary" and exp.configured_weights() == {"v1": 100.0, "v9": 0.0}
    assert exp.rollout is not None and exp.rollout.candidate == "v9"
    assert exp.rollout.steps == [50, 100] and exp.rollout.min_samples == 20


def test_a_shadow_agreement_gate_makes_the_candidate_a_shadow() -> None:
    gated = BLUE_GREEN.replace(
        "min_samples: 20}", "min_samples: 20, gates: [{metric: shadow_agreement, min: 0.9}]}"
    )
    text = deployed_yaml(gated, "v9", "http://127.0.0.1:8109", "v9", "rollout", "n")
    exp = parse_experiment(text, Path("exp.yaml")).experiment
    assert exp.shadow is not None and exp.shadow.targets == ["v9"]


def test_weighted_experiments_keep_their_sticky_scheme() -> None:
    canary = BLUE_GREEN.replace(
        "policy: {kind: blue_green, active: v1}",
        "policy: {kind: ab, weights: {v1: 100}, sticky: {key: user_id, hash: turnout}}",
    )
    text = deployed_yaml(canary, "v9", "http://127.0.0.1:8109", "v9", "rollout", "n")
    data = yaml.safe_load(text)
    assert data["policy"]["kind"] == "ab" and data["policy"]["sticky"]["hash"] == "turnout"
    assert data["policy"]["weights"] == {"v1": 100, "v9": 0}


@pytest.mark.parametrize(
    ("text", "mode", "message"),
    [
        (BLUE_GREEN, "teleport", "unknown deploy mode"),
        (BLUE_GREEN.split("retrain:")[0], "rollout", "no rollout settings"),
        (
            BLUE_GREEN.replace(
                "policy: {kind: blue_green, active: v1}", "policy: {kind: bandit, arms: [v1]}"
            ),
            "rollout",
            "not bandit",
        ),
        ("- a list\n", "shadow", "one mapping"),
    ],
)
def test_refusals(text: str, mode: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        deployed_yaml(text, "v9", "http://127.0.0.1:8109", "v9", mode, "n")


OWN_ROLLOUT = """\
name: exp
model: profanity
control: v1
variants:
  v1: {url: "http://127.0.0.1:8101"}
  v2: {url: "http://127.0.0.1:8102"}
policy: {kind: canary, weights: {v1: 100, v2: 0}}
rollout: {candidate: v2, steps: [20, 100], interval: 5m}
"""


def test_an_experiments_own_rollout_block_gives_the_settings() -> None:
    out = yaml.safe_load(
        deployed_yaml(OWN_ROLLOUT, "v9", "http://127.0.0.1:8109", "v9", "rollout", "n")
    )
    assert out["rollout"] == {"candidate": "v9", "steps": [20, 100], "interval": "5m"}
    assert out["policy"]["weights"] == {"v1": 100, "v9": 0}

"""The capture and retrain blocks: defaults, units, and every bad value refused with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.config.experiments import parse_duration, parse_size
from router.config.loader import parse_experiment
from router.core.errors import ConfigError

BASE = """\
name: exp
model: profanity
control: v1
variants:
  v1: {url: "http://127.0.0.1:8101"}
policy: {kind: blue_green, active: v1}
"""


def refusal(tail: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_experiment(BASE + tail, Path("exp.yaml"))
    return info.value.detail


def test_the_issue_example_loads() -> None:
    exp = parse_experiment(
        BASE + "capture: {sample: 0.05, inputs: false, retention: 7d, max_bytes: 1GiB}\n",
        Path("exp.yaml"),
    ).experiment
    assert exp.capture is not None
    assert exp.capture.sample == 0.05 and exp.capture.inputs is False
    assert exp.capture.retention == 7 * 86_400 and exp.capture.max_bytes == 2**30


def test_defaults_keep_no_inputs() -> None:
    exp = parse_experiment(BASE + "capture: {}\n", Path("exp.yaml")).experiment
    assert exp.capture is not None
    assert (exp.capture.sample, exp.capture.inputs) == (0.05, False)
    assert parse_experiment(BASE, Path("exp.yaml")).experiment.capture is None


@pytest.mark.parametrize(
    ("value", "seconds"), [("7d", 604_800.0), ("24h", 86_400.0), ("1.5d", 129_600.0)]
)
def test_days_are_a_duration(value: str, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "size"),
    [("1GiB", 2**30), ("500MiB", 500 * 2**20), ("10MB", 10**7), ("2048B", 2048)],
)
def test_sizes(value: str, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        ("capture: {sample: 1.5}\n", "capture.sample: Input should be less than or equal to 1"),
        ("capture: {retention: 7 days}\n", "capture.retention: malformed duration"),
        ("capture: {retention: 604800}\n", "capture.retention: malformed duration"),
        ("capture: {retention: 0d}\n", "capture.retention: must be a positive duration"),
        ("capture: {max_bytes: 1073741824}\n", "capture.max_bytes: malformed size"),
        ("capture: {max_bytes: 1 gigabyte}\n", "capture.max_bytes: malformed size"),
        ("capture: {max_bytes: 100KiB}\n", "capture.max_bytes: must be at least 1MiB"),
        ("capture: {inputs: maybe}\n", "capture.inputs"),
        ("capture: {sampel: 0.1}\n", "capture.sampel: unknown key"),
        ("retrain: {shadow_sample: 2}\n", "retrain.shadow_sample"),
        ("retrain: {rollout: {steps: [50, 10], interval: 1m}}\n", "strictly increasing"),
        ("retrain: {rollout: {candidate: v1, steps: [50], interval: 1m}}\n", "unknown key"),
    ],
)
def test_bad_values_are_refused_with_the_line(tail: str, message: str) -> None:
    detail = refusal(tail)
    assert "exp.yaml:7:" in detail and message in detail, detail


def test_retrain_rollout_settings_load_without_a_candidate() -> None:
    exp = parse_experiment(
        BASE + "retrain:\n  rollout: {steps: [50, 100], interval: 1s, min_samples: 20}\n",
        Path("exp.yaml"),
    ).experiment
    assert exp.retrain is not None and exp.retrain.rollout is not None
    assert exp.retrain.rollout.steps == [50, 100] and exp.retrain.rollout.interval == 1.0

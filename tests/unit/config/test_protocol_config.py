"""Variant protocols and declared inputs in experiment files: each refusal names file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.config.experiments import InputConfig
from router.config.loader import parse_experiment
from router.core.errors import ConfigError, InvalidInput
from router.upstream.protocols.http_json import HttpJsonSettings
from router.upstream.protocols.open_inference import OpenInferenceSettings

ALLOWED = ["127.0.0.1"]
MIXED = """\
name: exp
model: profanity
control: v1
variants:
  v1: {url: "http://127.0.0.1:8101"}
  seed:
    url: "http://127.0.0.1:9000"
    protocol: http_json
    score: confidence
    label: is_profane
    labels: {true: 1, false: 0}
    health: none
  oip:
    url: "http://127.0.0.1:9001"
    protocol: open_inference
    model: profanity
policy:
  kind: canary
  weights: {v1: 50, seed: 25, oip: 25}
"""
WINE = """\
name: wine
model: wine
control: v1
variants:
  v1: {url: "http://127.0.0.1:8201"}
input:
  kind: features
  names: [alcohol, hue]
sample_input: {features: {alcohol: 13.0, hue: 1.0}}
policy: {kind: blue_green, active: v1}
"""


def refusal(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_experiment(text, Path("exp.yaml"), ALLOWED)
    return info.value.detail


def test_variants_default_to_turnout_and_keep_their_protocol_settings() -> None:
    exp = parse_experiment(MIXED, Path("exp.yaml"), ALLOWED).experiment
    assert exp.variants["v1"].protocol == "turnout"
    seed = exp.variants["seed"].settings()
    assert isinstance(seed, HttpJsonSettings)
    assert (seed.score, seed.label, seed.health) == ("confidence", "is_profane", "none")
    assert seed.labels == {True: 1, False: 0}
    oip = exp.variants["oip"].settings()
    assert isinstance(oip, OpenInferenceSettings) and oip.model == "profanity"
    assert exp.input.kind == "text"


def test_unknown_protocol_is_refused_with_its_line() -> None:
    detail = refusal(MIXED.replace("protocol: http_json", "protocol: grpc"))
    assert detail.startswith("exp.yaml:7: variants.seed: unknown protocol 'grpc'")
    assert "http_json" in detail and "open_inference" in detail


def test_a_setting_of_another_protocol_is_refused() -> None:
    detail = refusal(MIXED.replace("health: none", "api: predict"))
    assert detail.startswith("exp.yaml:12: variants.seed.api: not a setting of protocol http_json")
    assert "health" in detail  # it says what the protocol takes


def test_a_turnout_variant_takes_no_protocol_settings() -> None:
    detail = refusal(
        MIXED.replace(
            'v1: {url: "http://127.0.0.1:8101"}', 'v1: {url: "http://127.0.0.1:8101", score: x}'
        )
    )
    assert "exp.yaml:5: variants.v1.score: not a setting of protocol turnout" in detail


def test_open_inference_without_model_is_refused() -> None:
    detail = refusal(MIXED.replace("    model: profanity\n", ""))
    assert detail == "exp.yaml:14: variants.oip.model: Field required"


def test_a_field_path_that_does_not_parse_is_refused() -> None:
    detail = refusal(MIXED.replace("score: confidence", "score: outputs..0"))
    assert detail == (
        "exp.yaml:9: variants.seed.score: field path 'outputs..0' does not parse at character 9"
    )


def test_features_without_names_are_refused() -> None:
    detail = refusal(WINE.replace("  names: [alcohol, hue]\n", "").replace("sample_input", "#"))
    assert detail == "exp.yaml:7: input: kind: features needs names (the feature names, in order)"


def test_text_input_takes_no_names() -> None:
    assert "apply to kind: features only" in refusal(MIXED + "input: {kind: text, names: [a]}\n")


def test_types_naming_unknown_features_are_refused() -> None:
    text = WINE.replace("names: [alcohol, hue]", "names: [alcohol, hue]\n  types: {colour: string}")
    assert "types names unknown features: colour" in refusal(text)


def test_a_sample_input_that_breaks_the_input_rules_is_refused() -> None:
    detail = refusal(WINE.replace("hue: 1.0", "hue: .nan"))
    assert detail == "exp.yaml:9: sample_input: 'features.hue' must be a finite number, got nan"


def test_features_input_checks_each_field_by_name() -> None:
    spec = InputConfig(kind="features", names=["a", "b", "c"], types={"c": "string"})
    payload = spec.payload({"features": {"a": 1, "b": 2.5, "c": "red"}}, 100)
    assert dict(payload.features) == {"a": 1.0, "b": 2.5, "c": "red"}
    assert list(payload.features) == ["a", "b", "c"]
    cases = {
        "missing": ({"a": 1, "b": 2}, "missing features: 'features.c'"),
        "unknown": ({"a": 1, "b": 2, "c": "x", "d": 4}, "unknown features: 'features.d'"),
        "non-finite": ({"a": float("inf"), "b": 2, "c": "x"}, "'features.a' must be a finite"),
        "wrong type": ({"a": "1", "b": 2, "c": "x"}, "'features.a' must be a number, got str"),
        "boolean": ({"a": True, "b": 2, "c": "x"}, "'features.a' must be a number, got bool"),
        "string type": ({"a": 1, "b": 2, "c": 3}, "'features.c' must be a string, got int"),
    }
    for name, (features, reason) in cases.items():
        with pytest.raises(InvalidInput) as info:
            spec.payload({"features": features}, 100)
        assert reason in info.value.detail, name
    with pytest.raises(InvalidInput, match="'features' is required"):
        spec.payload({"text": "hello"}, 100)
    with pytest.raises(InvalidInput, match="'features' must be a JSON object"):
        spec.payload({"features": [1, 2, 3]}, 100)

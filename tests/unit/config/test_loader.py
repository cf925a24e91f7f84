"""The experiment loader refuses bad files with the file, the line and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.config.loader import parse_experiment
from router.config.resolve import load_directory
from router.core.errors import ConfigError

ALLOWED = ["127.0.0.1", "localhost"]
GOOD = """\
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


def refusal(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_experiment(text, Path("exp.yaml"), ALLOWED)
    return info.value.detail


def test_good_file_loads_with_a_content_hash() -> None:
    loaded = parse_experiment(GOOD, Path("exp.yaml"), ALLOWED)
    assert loaded.experiment.configured_weights() == {"v1": 90, "v2": 10}
    assert len(loaded.config_version) == 12
    other = parse_experiment(GOOD.replace("90", "80").replace("10}", "20}"), Path("e"), ALLOWED)
    assert other.config_version != loaded.config_version


BAD = [
    ("weights not summing to 100", GOOD.replace("v2: 10", "v2: 11"), 9, "sum to 100"),
    ("nan weight", GOOD.replace("v2: 10", "v2: .nan"), 9, "finite"),
    ("negative weight", GOOD.replace("v1: 90, v2: 10", "v1: 110, v2: -10"), 9, "negative"),
    ("unknown control", GOOD.replace("control: v1", "control: v9"), 1, "control 'v9'"),
    ("missing control", GOOD.replace("control: v1\n", ""), 1, "control: Field required"),
    ("variant without url", GOOD.replace('{url: "http://127.0.0.1:8102"}', "{}"), 6, "url"),
    ("ftp url", GOOD.replace("http://127.0.0.1:8102", "ftp://127.0.0.1:8102"), 6, "scheme"),
    ("host not allowed", GOOD.replace("127.0.0.1:8102", "evil.example:80"), 6, "allowed hosts"),
    ("unknown key", GOOD + "colour: blue\n", 10, "unknown key"),
    ("unknown nested key", GOOD.replace("kind: canary", "kind: canary\n  ramp: 5"), 9, "unknown"),
    ("unknown policy kind", GOOD.replace("kind: canary", "kind: roulette"), 8, "policy"),
    ("weights name unknown variant", GOOD.replace("v2: 10}", "v7: 10}"), 1, "unknown variants"),
    ("unsafe tag", GOOD + "x: !!python/object/apply:os.system ['true']\n", 10, "invalid YAML"),
    ("not a mapping", "- a\n- b\n", 1, "one mapping"),
    ("broken yaml", "name: [unclosed\n", 2, "invalid YAML"),
    ("bad name", GOOD.replace("name: exp", "name: 'Bad Name!'"), 1, "name"),
    (
        "shadow sample out of range",
        GOOD + "shadow: {targets: [v2], sample: 1.5}\n",
        10,
        "less than or equal to 1",
    ),
    ("shadow unknown target", GOOD + "shadow: {targets: [v9]}\n", 1, "unknown variants: v9"),
    (
        "ab without sticky",
        GOOD.replace("kind: canary", "kind: ab"),
        8,
        "sticky",
    ),
    (
        "bandit invalid prior",
        GOOD.replace("kind: canary\n  weights: {v1: 90, v2: 10}", "kind: bandit\n  arms: [v1, v2]")
        + "  prior: [0, 1]\n",
        10,
        "prior",
    ),
]


@pytest.mark.parametrize(("text", "line", "reason"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_files_are_refused_with_line_and_reason(text: str, line: int, reason: str) -> None:
    detail = refusal(text)
    assert detail.startswith("exp.yaml:"), detail
    assert f"exp.yaml:{line}:" in detail, detail
    assert reason in detail, detail


def test_two_files_for_one_model_at_a_cold_start_are_both_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD.replace("name: exp", "name: exp2"))
    (tmp_path / "c.yaml").write_text(
        GOOD.replace("name: exp", "name: other").replace("model: profanity", "model: spam")
    )
    report = load_directory(tmp_path, ALLOWED)
    assert list(report.experiments) == ["other"]
    assert sorted(p.name for p in report.errors) == ["a.yaml", "b.yaml"]
    assert "also claimed by b.yaml" in report.errors[tmp_path / "a.yaml"].detail
    assert report.conflicts == {"profanity": (tmp_path / "a.yaml", tmp_path / "b.yaml")}


def test_shipped_experiments_are_valid() -> None:
    report = load_directory(Path(__file__).parents[3] / "experiments", ALLOWED)
    assert not report.errors
    assert report.experiments


@pytest.mark.parametrize(
    ("tail", "reason"),
    [
        ("fallback: [v1]", "fallback must not name the control"),
        ("fallback: [v9]", "fallback names unknown variants: v9"),
        ("fallback: [v2, v2]", "fallback must not repeat a variant"),
        ("fallback: v2", "fallback: Input should be a valid list"),
    ],
)
def test_a_bad_fallback_list_is_refused(tail: str, reason: str) -> None:
    assert reason in refusal(GOOD + tail + "\n")


def test_a_fallback_list_loads_in_its_order() -> None:
    text = GOOD.replace(
        '  v2: {url: "http://127.0.0.1:8102"}\n',
        '  v2: {url: "http://127.0.0.1:8102"}\n  v3: {url: "http://127.0.0.1:8103"}\n',
    )
    loaded = parse_experiment(text + "fallback: [v3, v2]\n", Path("exp.yaml"), ALLOWED)
    assert loaded.experiment.fallback == ["v3", "v2"]


DOCS = Path(__file__).parents[3] / "docs" / "experiment-yaml.md"


@pytest.mark.parametrize("kind", ["canary", "bandit"])
def test_sticky_false_means_not_sticky(kind: str) -> None:
    policy = (
        "  weights: {v1: 90, v2: 10}\n" if kind == "canary" else "  arms: [v1, v2]\n"
    ) + "  sticky: false\n"
    text = GOOD.split("policy:")[0] + f"policy:\n  kind: {kind}\n{policy}"
    loaded = parse_experiment(text, Path("exp.yaml"), ALLOWED)
    assert loaded.experiment.policy.sticky is None  # type: ignore[union-attr]


def test_the_documented_sticky_false_loads() -> None:
    (line,) = [
        ln
        for ln in DOCS.read_text().splitlines()
        if ln.startswith("policy:") and "sticky: false" in ln
    ]
    text = GOOD.split("policy:")[0] + line.split("#")[0] + "\n"
    loaded = parse_experiment(text, Path("exp.yaml"), ALLOWED)
    assert loaded.experiment.policy.sticky is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        ("{kind: ab, weights: {v1: 50, v2: 50}, sticky: false}", "an A/B test is sticky"),
        ("{kind: canary, weights: {v1: 90, v2: 10}, sticky: true}", "sticky: true names no key"),
    ],
)
def test_sticky_true_and_an_unsticky_ab_are_refused(policy: str, reason: str) -> None:
    assert reason in refusal(GOOD.split("policy:")[0] + f"policy: {policy}\n")
